// Suites attach to the run's shared worker with this.
import { inject } from 'vitest'
import { Worker, type WorkerOptions } from '../../ts/worker/worker.ts'

export function attachShared(opts: WorkerOptions = {}): Promise<Worker> {
  return Worker.attach(inject('workerEndpoint'), { startTimeoutMs: 90_000, ...opts })
}
