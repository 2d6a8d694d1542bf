// A data-check thread (started by checkSamples in check.ts): checks the batches of samples it is
// sent and answers each with their results, in order.
import { parentPort } from 'node:worker_threads'
import { checkSample, type CheckOptions } from './check.ts'
import type { SampleRef } from './dataset.ts'

parentPort?.on('message', (msg: { refs: SampleRef[]; opts: CheckOptions }) => {
  void Promise.all(msg.refs.map((r) => checkSample(r, msg.opts))).then((out) => parentPort!.postMessage(out))
})
