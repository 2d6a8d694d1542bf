// What makes a resumed run the same run, and who may write a run directory.
//
// - Identity: the sha256 of the resolved configuration, of each split file (its bytes and the
//   sample ids it resolves to) and a fingerprint of the data (every listed file's size and mtime).
//   Each checkpoint records it; resuming compares and refuses a difference, naming it, unless the
//   change keeps the run meaningful and the user said --allow-changes.
// - A lock file (run.lock, holding the pid and host) on the run directory: a second driver is
//   refused naming the pid; a stale lock of a process that is gone is taken over.
// - Run directories: a new run never lands in an existing run's directory; default names get a
//   suffix (-2, -3, …) when a directory of the same second exists, reserved atomically by mkdir.
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { hostname } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { checkConfig } from '../config/check.ts'
import type { ExperimentConfig } from '../config/schema.ts'
import type { DatasetEntries, LoadedCheckpoint, RunIdentity } from './checkpoint.ts'
import type { RunData } from './data.ts'

/** JSON with object keys sorted, so equal configurations hash equal whatever their key order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>
    return `{${Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')

export function configSha256(cfg: unknown): string {
  return sha256(canonicalJson(cfg))
}

/** The run's identity, and the per-file list behind its data fingerprint. */
export async function runIdentity(cfg: ExperimentConfig, data: RunData): Promise<{ identity: RunIdentity; entries: DatasetEntries }> {
  const root = resolve(cfg.data.root ?? '.')
  const splits = {} as RunIdentity['splits']
  for (const which of ['labeled', 'unlabeled', 'val'] as const) {
    const refs = data[which]
    splits[which] = {
      path: data.splits[which].path, sha256: data.splits[which].sha256,
      samples_sha256: sha256(refs.map((r) => r.id).join('\n')), samples: refs.length,
    }
  }
  const files = new Set<string>()
  for (const which of ['labeled', 'unlabeled', 'val'] as const) {
    for (const r of data[which]) {
      files.add(r.image)
      if (r.label) files.add(r.label)
    }
  }
  for (const s of data.skipped) files.add(s.file)
  const list = [...files].sort()
  const entries: DatasetEntries = new Array(list.length)
  let next = 0
  const lane = async () => {
    while (next < list.length) {
      const i = next++
      const st = await stat(list[i]!).catch(() => null)
      entries[i] = [relative(root, list[i]!), st ? st.size : -1, st ? Math.round(st.mtimeMs) : -1]
    }
  }
  await Promise.all(Array.from({ length: 32 }, lane))
  const bytes = entries.reduce((a, e) => a + Math.max(0, e[1]), 0)
  const dataset = { files: entries.length, bytes, sha256: sha256(entries.map((e) => e.join('\t')).join('\n')) }
  return { identity: { config_sha256: configSha256(cfg), splits, dataset }, entries }
}

/** A saved configuration as the check would resolve it today (so that settings added since it was
 *  written compare as their defaults); as saved when it no longer passes the check. */
export function normalized(saved: unknown): unknown {
  try {
    return checkConfig(structuredClone(saved))
  } catch {
    return saved
  }
}

/** Settings that may change on resume without --allow-changes: where and on how many workers. */
// world.*, worker.device, worker.threads: the ranks, the device and the CPU threads they compute
// on (a run may move to another machine); worker.python: the interpreter comes from the
// environment, not the run; recovery.*, log.*, worker.decode_threads: how many restarts to allow,
// what to show and how many threads decode change nothing the run computes.
const ALWAYS = [/^world\./, /^worker\.(python|device|threads|decode_threads)$/, /^recovery\./, /^log\./]

/** Whether a setting may always differ between a run directory and the configuration that
 *  continues it (see ALWAYS). */
export function mayAlwaysChange(path: string): boolean {
  return ALWAYS.some((re) => re.test(path))
}
/** Settings that keep a run meaningful when changed on resume with --allow-changes. */
export const ALLOWED_CHANGES = ['sampling.epochs', 'eval.every_epochs', 'checkpoint.every_steps'] as const

export interface Change { path: string; from: unknown; to: unknown }

/** The leaf settings that differ between two configurations (paths like `loss.terms.1.weight`). */
export function configChanges(from: unknown, to: unknown, path = ''): Change[] {
  if (canonicalJson(from) === canonicalJson(to)) return []
  const isObj = (v: unknown) => v !== null && typeof v === 'object' && !Array.isArray(v)
  if (isObj(from) && isObj(to)) {
    const a = from as Record<string, unknown>
    const b = to as Record<string, unknown>
    return [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()
      .flatMap((k) => configChanges(a[k], b[k], path ? `${path}.${k}` : k))
  }
  if (Array.isArray(from) && Array.isArray(to) && from.length === to.length) {
    return from.flatMap((v, i) => configChanges(v, to[i], path ? `${path}.${i}` : String(i)))
  }
  return [{ path, from, to }]
}

const show = (v: unknown) => {
  const s = v === undefined ? '(absent)' : JSON.stringify(v)
  return s.length > 60 ? `${s.slice(0, 57)}…` : s
}
export const describeChange = (c: Change) => `${c.path}: ${show(c.from)} → ${show(c.to)}`

/** Classify a resume's configuration changes; throws naming every change that is not allowed.
 *  Returns the changes that were accepted (world.* always; the ALLOWED_CHANGES with allowChanges). */
export function checkConfigChanges(changes: Change[], o: { runDir: string; allowChanges?: boolean; against: string }): Change[] {
  const always = changes.filter((c) => mayAlwaysChange(c.path))
  const allowable = changes.filter((c) => (ALLOWED_CHANGES as readonly string[]).includes(c.path))
  const refused = changes.filter((c) => !always.includes(c) && (!o.allowChanges || !allowable.includes(c)))
  if (refused.length) {
    const hint = refused.every((c) => allowable.includes(c))
      ? 'pass --allow-changes to accept them'
      : `start a new run for a different configuration (only world.*, recovery.*, log.*, worker.python, worker.device and worker.threads may change on resume, and with --allow-changes also ${ALLOWED_CHANGES.join(', ')})`
    throw new Error(`cannot resume ${o.runDir}: the configuration differs from ${o.against} in ${refused.map(describeChange).join('; ')}. ${hint}`)
  }
  return [...always, ...(o.allowChanges ? allowable : [])]
}

/** Compare this run's data with a checkpoint's; throws naming what differs. A split that lists
 *  other samples is never accepted; the same samples in other bytes (whitespace, line endings)
 *  and data files with other sizes or times are, with allowChanges. Returns warnings. */
export async function checkDataIdentity(ck: LoadedCheckpoint, now: { identity: RunIdentity; entries: DatasetEntries }, o: { runDir: string; allowChanges?: boolean }): Promise<string[]> {
  const was = ck.identity
  if (!was) return [`warning: ${ck.dir} predates split and data fingerprints: the splits and data are not compared`]
  const refused: string[] = []
  const allowed: string[] = []
  for (const which of ['labeled', 'unlabeled', 'val'] as const) {
    const a = was.splits[which]
    const b = now.identity.splits[which]
    if (!a || !b) continue
    if (a.samples_sha256 !== b.samples_sha256) {
      refused.push(`split ${which} (${b.path}) lists other samples: ${a.samples} samples, sha256 ${a.sha256.slice(0, 16)} in the checkpoint; ${b.samples}, sha256 ${b.sha256.slice(0, 16)} now`)
    } else if (a.sha256 !== b.sha256) {
      allowed.push(`split ${which} (${b.path}) changed bytes but lists the same ${b.samples} samples (sha256 ${a.sha256.slice(0, 16)} → ${b.sha256.slice(0, 16)})`)
    }
  }
  if (was.dataset.sha256 !== now.identity.dataset.sha256) {
    allowed.push(`the data files changed (${await datasetDiff(ck, now.entries)})`)
  }
  if (refused.length) {
    throw new Error(`cannot resume ${o.runDir}: ${[...refused, ...allowed].join('; ')}. A run continues on the data it started with; start a new run for other splits`)
  }
  if (allowed.length && !o.allowChanges) {
    throw new Error(`cannot resume ${o.runDir}: ${allowed.join('; ')}. Pass --allow-changes if the content is the same (e.g. a copied dataset)`)
  }
  return allowed.map((a) => `warning: resuming with changes (--allow-changes): ${a}`)
}

async function datasetDiff(ck: LoadedCheckpoint, now: DatasetEntries): Promise<string> {
  const was = ck.identity!.dataset
  const counts = `${was.files} files of ${was.bytes} bytes in the checkpoint, ${now.length} of ${now.reduce((a, e) => a + Math.max(0, e[1]), 0)} now`
  if (!ck.datasetFile) return counts
  let before: DatasetEntries
  try {
    before = JSON.parse(await readFile(ck.datasetFile, 'utf8'))
  } catch {
    return counts
  }
  const index = new Map(before.map((e) => [e[0], e]))
  const seen = new Set<string>()
  const diffs: string[] = []
  for (const e of now) {
    seen.add(e[0])
    const b = index.get(e[0])
    if (!b) diffs.push(`${e[0]} is new`)
    else if (e[1] < 0) diffs.push(`${e[0]} is missing`)
    else if (b[1] !== e[1]) diffs.push(`${e[0]} size ${b[1]} → ${e[1]}`)
    else if (b[2] !== e[2]) diffs.push(`${e[0]} modified ${new Date(b[2]).toISOString()} → ${new Date(e[2]).toISOString()}`)
  }
  for (const b of before) if (!seen.has(b[0])) diffs.push(`${b[0]} is no longer listed`)
  const named = diffs.slice(0, 5).join(', ') + (diffs.length > 5 ? `, and ${diffs.length - 5} more` : '')
  return `${counts}: ${named}`
}

/** Files that make a directory a run's (any one of them). */
export const RUN_FILES = ['config.json', 'metrics.jsonl', 'summary.json', 'splits.json', 'checkpoints', 'run.lock']

export function isRunDirectory(dir: string, ignore: string[] = []): boolean {
  return RUN_FILES.some((f) => !ignore.includes(f) && existsSync(join(dir, f)))
}

/** Create a new run's directory. An explicit one may exist (the caller checks, under the lock,
 *  that it holds no run); a default one (`auto`) is reserved with an exclusive mkdir, adding -2,
 *  -3, … when the name is taken. */
export function createRunDirectory(dir: string, o: { auto: boolean }): string {
  mkdirSync(dirname(dir), { recursive: true })
  if (!o.auto) {
    mkdirSync(dir, { recursive: true })
    return dir
  }
  for (let n = 1; ; n++) {
    const candidate = n === 1 ? dir : `${dir}-${n}`
    try {
      mkdirSync(candidate)
      return candidate
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || n >= 10_000) throw e
    }
  }
}

export function existingRun(dir: string): Error {
  const held = existsSync(dir) ? readdirSync(dir).filter((f) => RUN_FILES.includes(f)) : []
  return new Error(`${dir} already holds a run (${held.join(', ')}): resume it with --resume ${dir}, or choose another --run-dir`)
}

export interface RunLock { path: string; release(): void }

interface LockInfo { pid: number; host: string; started: string }

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Lock a run directory for this process (run.lock: pid, host, time). Refused, naming the pid,
 *  while another live process holds it (on this host; a lock from another host is refused too,
 *  since its pid cannot be checked from here); a lock whose process is gone is taken over. */
export function lockRunDirectory(dir: string): RunLock {
  const path = join(dir, 'run.lock')
  const mine: LockInfo = { pid: process.pid, host: hostname(), started: new Date().toISOString() }
  const text = JSON.stringify(mine)
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      writeFileSync(path, text, { flag: 'wx' })
      const release = () => {
        process.off('exit', release)
        try {
          if (readFileSync(path, 'utf8') === text) unlinkSync(path)
        } catch { /* gone already */ }
      }
      process.on('exit', release)
      return { path, release }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    }
    let held: string
    try {
      held = readFileSync(path, 'utf8')
    } catch {
      continue // released meanwhile: try again
    }
    let info: Partial<LockInfo> = {}
    try { info = JSON.parse(held) } catch { /* torn write of a killed driver: stale */ }
    const pid = typeof info.pid === 'number' ? info.pid : null
    if (pid !== null && info.host && info.host !== mine.host) {
      throw new Error(`${dir} is locked by pid ${pid} on host ${info.host} (since ${info.started}): another driver may be running this run. ` +
        `If it is not, remove ${path}`)
    }
    if (pid !== null && alive(pid)) {
      throw new Error(`${dir} is in use by another driver, pid ${pid}${pid === process.pid ? ' (this process)' : ''} (since ${info.started}): ` +
        `wait for it to end or stop it; two drivers cannot share a run directory`)
    }
    // Stale: take it over, unless someone else did first (the content changed).
    try {
      if (readFileSync(path, 'utf8') === held) unlinkSync(path)
    } catch { /* someone else removed it */ }
  }
  throw new Error(`${dir}: could not take the lock ${path} (contended)`)
}
