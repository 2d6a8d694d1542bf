// SIGINT/SIGTERM in a CLI command. A command that can stop gracefully (training) registers a
// handler: the first signal calls it (finish the steps in flight, write a checkpoint) and the
// command exits 130/143 itself. Otherwise, and on a second signal, the workers are shut down
// and the process exits with the usual code (the exit hook SIGKILLs any worker still running).
import { closeAllWorkers } from '../worker/worker.ts'

let graceful: ((signal: NodeJS.Signals) => void) | null = null

/** Call `handler` on the first SIGINT/SIGTERM instead of exiting; returns the unregister function. */
export function onFirstSignal(handler: (signal: NodeJS.Signals) => void): () => void {
  graceful = handler
  return () => { if (graceful === handler) graceful = null }
}

export const signalExitCode = (sig: NodeJS.Signals): number => (sig === 'SIGINT' ? 130 : 143)

export function exitCleanlyOnSignals(): void {
  let stopping = false
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (stopping) {
        process.stderr.write(`\n${sig} again: stopping now, without a checkpoint\n`)
        process.exit(signalExitCode(sig)) // a second signal: leave now
      }
      stopping = true
      if (graceful) {
        process.stderr.write(`\n${sig}: finishing the steps in flight and writing a checkpoint (${sig === 'SIGINT' ? 'Ctrl-C' : sig} again stops at once)\n`)
        graceful(sig)
        return
      }
      const hard = setTimeout(() => process.exit(1), 15_000)
      hard.unref()
      closeAllWorkers().finally(() => process.exit(signalExitCode(sig)))
    })
  }
}
