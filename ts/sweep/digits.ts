// The recipe behind the CPU demo and the learning benchmark (docs/learning.md): scenes of the
// handwritten digits 0-3 to segment from a few labels, and a trunk to start from, trained with every
// label on scenes of the other digits (4-9) — the small-scale stand-in for the ImageNet weights the
// paper starts from. Everything is generated or trained here, by seed, and reused when present:
//
//   <out>/data/       the digit scenes (0-3), nested labeled splits of DIGITS_TARGET.labeled
//   <out>/source/     the scenes of the other digits, nearly all labeled
//   <out>/pretrain/   the digits-pretrain run (a sweep of one run: kept when finished, resumed when not)
//   <out>/pretrain/trunk.safetensors   its teacher's trunk (prcl weights export)
//
// Pretraining takes about 5 minutes on 2 cores, so the repository ships the trunk it gives on the
// default draw (SHIPPED_TRUNK, checked by its sha256) and the demo starts from that; `trunk: 'train'`
// (prcl demo --pretrain) trains it instead, as does any other draw or pretraining setting.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { checkDigitsOptions, DIGITS_VERSION, generateDigits, type DigitsOptions } from '../data/digits.ts'
import { exportBackbone } from '../experiment/export.ts'
import { sha256File } from '../experiment/checkpoint.ts'
import { ROOT } from '../paths.ts'
import { runSweep } from './run.ts'

/** The scenes the methods are compared on: the digits 0-3, labeled splits from 20 to 160 scenes. */
export const DIGITS_TARGET: Omit<DigitsOptions, 'out'> = { seed: 0, digits: [0, 1, 2, 3], labeled: [20, 40, 80, 160] }
/** The scenes the trunk is trained on: the digits 4-9, 540 of 600 scenes labeled. */
export const DIGITS_SOURCE: Omit<DigitsOptions, 'out'> = { seed: 0, digits: [4, 5, 6, 7, 8, 9], images: 600, val: 60, labeled: 540 }
/** The presets of the two trainings (ts/config/presets.ts). */
export const DIGITS_PRESET = 'digits-demo'
export const PRETRAIN_PRESET = 'digits-pretrain'
/** The trunk prepareDigits(out, { trunk: 'train' }) made on the default draw (torch 1.13, CPU,
 *  2026-12-08): `<out>/pretrain/trunk.safetensors`, copied here. */
export const SHIPPED_TRUNK = { path: join(ROOT, 'bench', 'weights', 'digits-4-9-trunk.safetensors'), sha256: '4f1361d3966bd3edc9d9471e2a8c3df00a21a9e9a6618c83d1fd8447080c8c9a' }

export interface DigitsRecipe {
  /** The target scenes' directory. */
  data: string
  /** The trunk every compared run starts from (model.pretrained). */
  trunk: string
  /** The sets every compared run takes: the data and the trunk. */
  set: string[]
}

/** Writes `dir` unless it holds the dataset these options make; says so through `log`. */
export async function ensureDigits(dir: string, options: Omit<DigitsOptions, 'out'>, log: (l: string) => void): Promise<void> {
  const want = checkDigitsOptions({ out: dir, ...options })
  const manifest = join(dir, 'synth.json')
  if (existsSync(manifest)) {
    const written = JSON.parse(readFileSync(manifest, 'utf8'))
    const { out: _out, ...wanted } = want
    if (written.generator === 'prcl-digits' && written.version === DIGITS_VERSION && JSON.stringify(written.options) === JSON.stringify(wanted)) return
  }
  const s = await generateDigits(want)
  log(`digit scenes (${want.digits.join(', ')}): ${s.ids.train.length} train scenes (labeled splits ${s.sizes.join(', ')}), ${s.ids.val.length} val, in ${dir}`)
}

/** The target scenes and the pretrained trunk under `out`, made or reused (see the top of this file).
 *  `target.seed` and `source.seed` choose the draw (the development draw uses others). */
export async function prepareDigits(out: string, o: {
  target?: Omit<DigitsOptions, 'out'>; source?: Omit<DigitsOptions, 'out'>; log?: (l: string) => void; signal?: AbortSignal
  /** Overrides of the pretraining run (tests shorten it). */
  set?: string[]
  /** shipped: start from SHIPPED_TRUNK when it is the trunk these options give [default]; train: pretrain here. */
  trunk?: 'shipped' | 'train'
} = {}): Promise<DigitsRecipe> {
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`))
  const target = o.target ?? DIGITS_TARGET
  const source = o.source ?? DIGITS_SOURCE
  const data = join(out, 'data')
  await ensureDigits(data, target, log)
  const shipped = (o.trunk ?? 'shipped') === 'shipped' && source === DIGITS_SOURCE && !o.set?.length
  const ready = shipped && await isShipped()
  if (shipped && !ready) log(`${SHIPPED_TRUNK.path} is missing or not the file recorded (sha256 ${SHIPPED_TRUNK.sha256.slice(0, 12)}…): pretraining the trunk here (about 5 minutes on 2 cores)`)
  const trunk = ready ? SHIPPED_TRUNK.path : await pretrain(out, source, o.set ?? [], log, o.signal)
  const t = checkDigitsOptions({ out: data, ...target })
  return { data, trunk, set: [`data.root=${data}`, `model.pretrained=${trunk}`, `model.num_classes=${t.classes}`] }
}

/** Whether the shipped trunk is there, byte for byte. */
async function isShipped(): Promise<boolean> {
  return existsSync(SHIPPED_TRUNK.path) && await sha256File(SHIPPED_TRUNK.path) === SHIPPED_TRUNK.sha256
}

/** Trains the trunk on the source scenes (a sweep of one run, resumed or kept) and exports it. */
async function pretrain(out: string, source: Omit<DigitsOptions, 'out'>, set: string[], log: (l: string) => void, signal?: AbortSignal): Promise<string> {
  const src = join(out, 'source')
  await ensureDigits(src, source, log)
  const s = checkDigitsOptions({ out: src, ...source })
  const pre = await runSweep({
    config: PRETRAIN_PRESET, seeds: [0], out: join(out, 'pretrain'), log, signal,
    set: [`data.root=${src}`, ...splitSets(s.labeled[0]!, s.seed), `model.num_classes=${s.classes}`, ...set],
    axes: [{ name: 'pretrain', values: [{ label: 'pretrain', set: [] }] }], title: 'the trunk the digit runs start from',
  })
  if (pre.failed.length) throw new Error(`pretraining the trunk failed: ${pre.failed[0]!.error}`)
  if (pre.stopped !== null || !pre.runs[0]) throw new Error('pretraining the trunk was stopped: run the same command again to resume it')
  const trunk = join(out, 'pretrain', 'trunk.safetensors')
  await exportBackbone({ run: pre.runs[0].run_dir, out: trunk, checkpoint: 'latest' })
  return trunk
}

/** The settings that point a run at the labeled split of `labeled` scenes of the draw `seed`. */
export function splitSets(labeled: number, seed: number): string[] {
  const dir = `splits/${labeled}/${seed}`
  return [`data.splits.labeled=${dir}/labeled_filename.txt`, `data.splits.unlabeled=${dir}/unlabeled_filename.txt`, `data.splits.val=${dir}/valid_filename.txt`]
}
