// Suites attach to the run's shared worker with this. Should it not say hello in time (seen once
// in CI, right after the suite that drives a headless browser), the suite gets a worker of its
// own instead, said on stderr, so one slow reconnection does not fail a suite that tests
// something else; re-attaching a worker is tested in its own suites.
import { inject } from 'vitest'
import { WorkerDiedError } from '../../ts/wire/errors.ts'
import { Worker, type WorkerOptions } from '../../ts/worker/worker.ts'

export async function attachShared(opts: WorkerOptions = {}): Promise<Worker> {
  try {
    return await Worker.attach(inject('workerEndpoint'), { startTimeoutMs: 45_000, ...opts })
  } catch (e) {
    if (!(e instanceof WorkerDiedError)) throw e
    process.stderr.write(`attachShared: ${e.message}; starting a worker of this suite's own\n`)
    return Worker.start({ device: 'cpu', log: 'silent', ...opts })
  }
}
