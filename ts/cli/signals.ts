// SIGINT/SIGTERM in a CLI command: shut the workers down, then exit with the usual code.
import { closeAllWorkers } from '../worker/worker.ts'

export function exitCleanlyOnSignals(): void {
  let stopping = false
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (stopping) process.exit(sig === 'SIGINT' ? 130 : 143) // a second signal: leave now
      stopping = true
      const hard = setTimeout(() => process.exit(1), 15_000)
      hard.unref()
      closeAllWorkers().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143))
    })
  }
}
