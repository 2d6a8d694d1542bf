// Ranks started elsewhere, as on several machines: two torchrun launches (node ranks 0 and 1 of
// 2, each its own torchrun environment) connect to one driver over tcp with CURVE keys. The run
// trains, evaluates, checkpoints and resumes with fresh launches, to the losses of a group the
// driver spawned itself; a peer without keys and one with the wrong key are refused and the run
// goes on; an incomplete group is refused naming the missing ranks.
import { spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../ts/config/load.ts'
import type { ExperimentConfig } from '../../ts/config/schema.ts'
import { generateSynthetic } from '../../ts/data/synth.ts'
import { Experiment, type StepEvent } from '../../ts/experiment/run.ts'
import { PY_DIR } from '../../ts/paths.ts'
import { writeKeys } from '../../ts/wire/curve.ts'
import { WorkerGroupError } from '../../ts/worker/group.ts'
import { findPython } from '../../ts/worker/python.ts'

let dir: string
let data: string
let python: string
const procs: ChildProcess[] = []

/** A directory holding what a worker node gets from `prcl keys`: driver.key, worker.key_secret. */
function workerKeys(from: string, to: string, driverFrom = from): string {
  mkdirSync(to, { mode: 0o700 })
  copyFileSync(join(driverFrom, 'driver.key'), join(to, 'driver.key'))
  copyFileSync(join(from, 'worker.key_secret'), join(to, 'worker.key_secret'))
  chmodSync(join(to, 'worker.key_secret'), 0o600)
  return to
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'prcl-remote-'))
  data = join(dir, 'data')
  await generateSynthetic({ out: data, seed: 0, images: 24, val: 6, size: 40, labeled: 8 })
  writeKeys(join(dir, 'keys'))
  workerKeys(join(dir, 'keys'), join(dir, 'node'))
  writeKeys(join(dir, 'other-keys'))
  // The right driver's public key but a worker key it never issued; and another driver's key.
  workerKeys(join(dir, 'other-keys'), join(dir, 'stranger'), join(dir, 'keys'))
  workerKeys(join(dir, 'other-keys'), join(dir, 'elsewhere'))
  python = (await findPython()).python
}, 120_000)
afterAll(() => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL')
  rmSync(dir, { recursive: true, force: true })
})

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port
      srv.close(() => resolve(port))
    })
  })
}

interface Launched { proc: ChildProcess; exited: Promise<number | null>; output: () => string }

/** `python -m <args>` with the worker package on PYTHONPATH, as a user's node would run it. */
function launch(args: string[]): Launched {
  // No RANK or WORLD_SIZE from this process's environment: torchrun sets them.
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONPATH: PY_DIR, PYTHONUNBUFFERED: '1' }
  for (const k of ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT']) delete env[k]
  const proc = spawn(python, ['-m', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  procs.push(proc)
  let out = ''
  proc.stdout!.on('data', (b: Buffer) => { out += b.toString() })
  proc.stderr!.on('data', (b: Buffer) => { out += b.toString() })
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)))
  return { proc, exited, output: () => out }
}

/** Node `node` of two, one process each: torchrun's own launcher. (`--redirects 2 --tee 2`:
 *  torch 1.13's torchrun cannot parse its default "0" on Python ≥ 3.11; any torch accepts it.) */
function torchrun(node: number, endpoint: string, rendezvous: number, keys: string): Launched {
  return launch(['torch.distributed.run', '--nnodes', '2', '--node_rank', String(node), '--nproc_per_node', '1',
    '--master_addr', '127.0.0.1', '--master_port', String(rendezvous), '--redirects', '2', '--tee', '2',
    '-m', 'prcl_worker', '--connect', endpoint, '--keys', keys, '--device', 'cpu', '--threads', '1'])
}

function config(endpoint: string | null, sets: string[] = []): ExperimentConfig {
  return loadConfig('synthetic-demo', [
    `data.root=${data}`, 'data.splits.labeled=splits/8/0/labeled_filename.txt', 'data.splits.unlabeled=splits/8/0/unlabeled_filename.txt',
    'data.splits.val=splits/8/0/valid_filename.txt', 'data.labeled.crop=[32,32]', 'data.unlabeled.crop=[32,32]',
    'sampling.batch_size=4', 'sampling.epochs=2', 'sampling.epoch={"kind":"fixed","steps":4}', 'checkpoint.every_steps=3',
    'worker.threads=1', 'world.size=2', 'name=remote',
    ...(endpoint ? [`world.listen=${endpoint}`, `world.keys=${join(dir, 'keys')}`, 'world.wait_s=120'] : ['worker.device=cpu']),
    ...sets,
  ])
}

async function run(exp: Experiment): Promise<StepEvent[]> {
  const seen: StepEvent[] = []
  exp.on('step', (e: StepEvent) => seen.push(e))
  await exp.run()
  return seen
}

describe('ranks started by torchrun on two "machines" (loopback), CURVE on', () => {
  it('train, evaluate, checkpoint and resume, to the losses of a group the driver spawned', async () => {
    const port = await freePort()
    const endpoint = `tcp://127.0.0.1:${port}`
    const runDir = join(dir, 'run')
    const logged: string[] = []
    const first = new Experiment(config(endpoint), { runDir, stopAfter: 5, progress: false, log: (l) => logged.push(l) })
    const running = run(first)
    // Before the ranks: a peer with no keys, one whose worker key the driver does not admit, and
    // one that expects another driver's key.
    const unkeyed = launch(['prcl_worker', '--connect', endpoint, '--device', 'cpu'])
    const wrongKey = launch(['prcl_worker', '--connect', endpoint, '--keys', join(dir, 'stranger'), '--device', 'cpu'])
    const otherDriver = launch(['prcl_worker', '--connect', endpoint, '--keys', join(dir, 'elsewhere'), '--device', 'cpu'])
    const rendezvous = await freePort()
    const nodes = [0, 1].map((n) => torchrun(n, endpoint, rendezvous, join(dir, 'node')))
    const before = await running
    expect(before.map((e) => e.step)).toEqual([1, 2, 3, 4, 5])
    const log = logged.join('\n')
    expect(log).toMatch(/waiting up to 120 s for 2 ranks on tcp:\/\/127\.0\.0\.1:\d+ \(CURVE\)/)
    expect(log).toMatch(/rank 0 connected from .* 2 of 2|rank 1 connected from .* 2 of 2/)
    expect(log).toMatch(/refused a peer from 127\.0\.0\.1: its key .* is not among the 1 authorized/)
    expect(log).toMatch(/refused a peer from tcp:\/\/127\.0\.0\.1:\d+: handshake failed/)
    // The wrong key's worker learns it was refused and exits; the unkeyed one never got in.
    expect(await wrongKey.exited).toBe(3)
    expect(wrongKey.output()).toMatch(/refused this worker's CURVE key/)
    for (const p of [unkeyed, otherDriver]) {
      expect(p.proc.exitCode).toBeNull()
      expect(p.output()).toMatch(/handshake with tcp:\/\/127\.0\.0\.1:\d+ failed/)
      p.proc.kill('SIGTERM')
    }
    // Closing the run shut the ranks down, and torchrun exited cleanly on both nodes.
    expect(await Promise.all(nodes.map((n) => n.exited))).toEqual([0, 0])
    const metrics = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    expect(metrics.filter((m) => m.type === 'eval').map((m) => m.step)).toEqual([4])

    // Fresh launches (a new rendezvous), the same driver endpoint and keys: resume.
    const again = await freePort()
    const resumed = new Experiment(config(endpoint), { runDir, resume: true, progress: false, log: (l) => logged.push(l) })
    const resuming = run(resumed)
    const nodes2 = [0, 1].map((n) => torchrun(n, endpoint, again, join(dir, 'node')))
    const after = await resuming
    expect(after.map((e) => e.step)).toEqual([6, 7, 8])
    expect(await Promise.all(nodes2.map((n) => n.exited))).toEqual([0, 0])

    // The same run with ranks the driver spawns itself, uninterrupted: the same losses.
    const local = await run(new Experiment(config(null), { runDir: join(dir, 'local'), progress: false, log: () => undefined }))
    expect([...before, ...after].map((e) => [e.step, e.total, e.losses])).toEqual(local.map((e) => [e.step, e.total, e.losses]))
  }, 600_000)

  it('a rank killed mid-run takes every rank down, named, and both launches end', async () => {
    const port = await freePort()
    const endpoint = `tcp://127.0.0.1:${port}`
    const exp = new Experiment(config(endpoint), { runDir: join(dir, 'killed'), progress: false, log: () => undefined })
    let killedAt = 0
    exp.on('step', (e: StepEvent) => {
      if (e.step === 2) { killedAt = Date.now(); process.kill(exp.workers!.workers[1]!.hello.pid, 'SIGKILL') }
    })
    const failing = exp.run().catch((e: unknown) => e)
    const rendezvous = await freePort()
    const nodes = [0, 1].map((n) => torchrun(n, endpoint, rendezvous, join(dir, 'node')))
    const err = await failing
    expect(err).toBeInstanceOf(WorkerGroupError)
    expect((err as Error).message).toMatch(/^rank 1 of 2 \(pid \d+ on .+\) died, and every rank of the group was stopped: .* sent no heartbeat/)
    expect((err as WorkerGroupError).ranks).toEqual([1])
    // Rank 0 was told to exit (it may have been waiting in a collective for rank 1); torchrun on
    // each node saw its worker fail and ended.
    const codes = await Promise.all(nodes.map((n) => n.exited))
    expect(Date.now() - killedAt).toBeLessThan(30_000)
    expect(codes.every((c) => c !== 0 && c !== null)).toBe(true)
    expect(nodes[0]!.output()).toMatch(/the driver stopped this worker/)
  }, 120_000)

  it('refuses an incomplete group, naming the missing ranks, and stops the ranks that came', async () => {
    const port = await freePort()
    const endpoint = `tcp://127.0.0.1:${port}`
    const exp = new Experiment(config(endpoint, ['world.wait_s=20']), { runDir: join(dir, 'incomplete'), progress: false, log: () => undefined })
    const failing = exp.run().catch((e: unknown) => e)
    // One worker that is no rank at all (no torchrun environment).
    const alone = launch(['prcl_worker', '--connect', endpoint, '--keys', join(dir, 'node'), '--device', 'cpu'])
    const err = await failing
    expect(err).toBeInstanceOf(WorkerGroupError)
    expect((err as Error).message).toMatch(/waited 20 s on tcp:\/\/127\.0\.0\.1:\d+ for 2 ranks; 1 said hello \(pid \d+ on .*, no rank\); missing: ranks 0, 1/)
    // It was told to exit (the abort on its control socket).
    expect(await alone.exited).toBe(70)
    expect(alone.output()).toMatch(/the driver stopped this worker: the driver refused the group/)
  }, 120_000)
})
