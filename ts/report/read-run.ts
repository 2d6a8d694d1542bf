// A run directory as the report reads it: its configuration, metrics.jsonl (steps, evaluations,
// recoveries), summary.json when it finished, and the newest evaluation's picture strips.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'
import type { EvalEvent } from '../experiment/evaluate.ts'
import type { StepEvent } from '../experiment/metrics-log.ts'
import type { Recovery } from '../experiment/recovery.ts'

export interface RunView {
  dir: string
  name: string
  /** The name without a trailing `-seed<k>`: runs that differ only by seed share it. */
  group: string
  seed: number | null
  steps: StepEvent[]
  evals: EvalEvent[]
  recoveries: Recovery[]
  summary: { steps: number; wall_minutes: number; stopped?: string | null } | null
  /** The newest evaluation's strips, as PNG data URLs, and what their panels are. */
  pictures: {
    step: number; panels: string[]; var_max: number; images: Array<{ src: string; image: string }>
    /** The unlabeled images through the unlabeled branch (none for a labeled-only run). */
    unlabeled_panels: string[]; unlabeled_var_max: number; unlabeled: Array<{ src: string; image: string }>
  } | null
}

export function readRun(dirArg: string): RunView {
  const dir = resolve(dirArg)
  if (!existsSync(dir)) throw new Error(`run directory ${dir} does not exist`)
  const metrics = join(dir, 'metrics.jsonl')
  if (!existsSync(metrics)) throw new Error(`${dir} is not a run directory with metrics (no metrics.jsonl)`)
  const config = readJson(join(dir, 'config.json')) as { name?: string; seed?: number } | null
  const lines: Array<{ type?: string }> = []
  for (const line of readFileSync(metrics, 'utf8').split('\n')) {
    if (!line.trim()) continue
    try { lines.push(JSON.parse(line)) } catch { /* a torn last line of a killed driver */ }
  }
  const name = config?.name ?? basename(dir)
  return {
    dir, name, group: name.replace(/-seed\d+$/, ''), seed: typeof config?.seed === 'number' ? config.seed : null,
    steps: lines.filter((l): l is StepEvent => l.type === 'step'),
    evals: lines.filter((l): l is EvalEvent => l.type === 'eval'),
    recoveries: lines.filter((l): l is Recovery => l.type === 'recovery'),
    summary: readJson(join(dir, 'summary.json')) as RunView['summary'],
    pictures: newestPictures(dir),
  }
}

function newestPictures(dir: string): RunView['pictures'] {
  const root = join(dir, 'pictures')
  if (!existsSync(root)) return null
  const steps = readdirSync(root).map((d) => /^step-(\d+)$/.exec(d)).filter((m) => m !== null).map((m) => Number(m[1])).sort((a, b) => b - a)
  for (const step of steps) {
    type Listed = Array<{ file: string; image: string }>
    const meta = readJson(join(root, `step-${step}`, 'pictures.json')) as {
      panels: string[]; var_max: number; images: Listed; unlabeled_panels?: string[]; unlabeled_var_max?: number; unlabeled?: Listed
    } | null
    if (!meta) continue
    const inline = (list: Listed) => list.filter((im) => existsSync(join(root, `step-${step}`, im.file))).map((im) => ({
      src: `data:image/png;base64,${readFileSync(join(root, `step-${step}`, im.file)).toString('base64')}`, image: im.image,
    }))
    return {
      step, panels: meta.panels, var_max: meta.var_max, images: inline(meta.images),
      unlabeled_panels: meta.unlabeled_panels ?? [], unlabeled_var_max: meta.unlabeled_var_max ?? 0, unlabeled: inline(meta.unlabeled ?? []),
    }
  }
  return null
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'))
  } catch {
    return null
  }
}
