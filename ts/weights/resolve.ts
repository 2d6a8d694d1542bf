// model.pretrained → the file the worker loads: 'imagenet' finds the catalog's file for the
// backbone in the weights directories (never downloads: `prcl weights fetch` does), a path is
// taken as given, 'none' (or null) starts from random weights. Every file is hashed here and the
// worker checks the bytes it reads against that hash, so what was vetted is what is loaded.
import { existsSync, statSync } from 'node:fs'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { sha256File } from '../experiment/checkpoint.ts'
import { IMAGENET, knownFile, type WeightsFile } from './catalog.ts'

/** What the worker is told to load (wire: configure.model.pretrained). */
export interface PretrainedWeights {
  path: string
  sha256: string
  /** A pickle-based file may be read on a torch whose weights-only loader is not safe (< 2.6):
   *  its sha256 is one the catalog pins, or the user said --trust-weights. */
  trusted: boolean
}

export type Catalog = Readonly<Record<string, WeightsFile>>

export class WeightsError extends Error {
  override name = 'WeightsError'
}

/** Where ImageNet weights are looked for, in order: $PRCL_WEIGHTS (a directory), then torch's hub
 *  cache ($TORCH_HOME/hub/checkpoints, default ~/.cache/torch/hub/checkpoints), where torchvision
 *  and `prcl weights fetch` put them. */
export function weightsDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const torchHome = env.TORCH_HOME || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'torch')
  const dirs = [join(torchHome, 'hub', 'checkpoints')]
  if (env.PRCL_WEIGHTS) dirs.unshift(resolve(env.PRCL_WEIGHTS))
  return dirs
}

/** Each catalog file and the first of `dirs` holding a file of its name (unverified), or null. */
export function locateWeights(dirs: string[] = weightsDirs(), catalog: Catalog = IMAGENET): Array<WeightsFile & { found: string | null }> {
  return Object.values(catalog).map((w) => ({ ...w, found: dirs.map((d) => join(d, w.file)).find((f) => existsSync(f)) ?? null }))
}

/** The catalog entry for a model's backbone, or an error saying why there is none. */
function imagenetEntry(model: { backbone: string; width: number }, catalog: Catalog = IMAGENET): WeightsFile {
  const entry = Object.hasOwn(catalog, model.backbone) ? catalog[model.backbone] : undefined
  if (!entry) {
    throw new WeightsError(`model.pretrained: 'imagenet': no ImageNet weights are known for ${model.backbone} (known: ${Object.keys(catalog).join(', ')}); name a file, or set model.pretrained: none`)
  }
  if (model.width !== 1) {
    throw new WeightsError(`model.pretrained: 'imagenet': ImageNet weights exist for ${model.backbone} at width 1, and model.width is ${model.width}; set model.pretrained: none (or width 1)`)
  }
  return entry
}

function fetchHint(entry: WeightsFile, dirs: string[]): string {
  return `download ${entry.url} (sha256 ${entry.sha256}) into ${dirs.join(' or ')} ` +
    `(prcl weights fetch ${entry.backbone} does that, checking the sha256)`
}

/** Resolve `model.pretrained` (relative paths against `cwd`). */
export async function resolvePretrained(
  model: { backbone: string; width: number; pretrained: string | null },
  opts: { trust?: boolean; catalog?: Catalog; dirs?: string[]; cwd?: string } = {},
): Promise<PretrainedWeights | null> {
  const p = model.pretrained
  if (p === null || p === 'none') return null
  const catalog = opts.catalog ?? IMAGENET
  if (p === 'imagenet') {
    const entry = imagenetEntry(model, catalog)
    const dirs = opts.dirs ?? weightsDirs()
    const path = dirs.map((d) => join(d, entry.file)).find((f) => existsSync(f))
    if (!path) {
      throw new WeightsError(`model.pretrained: 'imagenet': ${entry.file} (${model.backbone}'s ImageNet weights) is not in ${dirs.join(' or ')}. ` +
        `To start from them, ${fetchHint(entry, dirs)}; to train from random weights, set model.pretrained: none`)
    }
    const sha256 = await sha256File(path)
    if (sha256 !== entry.sha256) {
      throw new WeightsError(`${path}: sha256 ${sha256}, but ${entry.file} has sha256 ${entry.sha256}: the file is damaged or not the published one. ` +
        `Delete it and ${fetchHint(entry, dirs)}`)
    }
    return { path, sha256, trusted: true }
  }
  const path = resolve(opts.cwd ?? '.', p)
  if (!existsSync(path) || !statSync(path).isFile()) throw new WeightsError(`model.pretrained: ${path}: no such file`)
  const sha256 = await sha256File(path)
  return { path, sha256, trusted: knownFile(sha256, catalog) !== undefined || opts.trust === true }
}
