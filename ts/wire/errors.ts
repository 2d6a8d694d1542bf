import type { RemoteError } from './envelope.ts'

/** A remote exception: the worker's error type, message and Python traceback. */
export class WorkerError extends Error {
  override name = 'WorkerError'
  readonly type: string
  readonly remoteTraceback: string[]
  readonly retryable: boolean
  readonly path: string | undefined
  readonly op: string | undefined
  readonly id: number | null

  constructor(error: RemoteError, op: string | undefined, id: number | null) {
    super(`${error.type}: ${error.message}${op ? ` (op ${op}, request ${id})` : ''}`)
    this.type = error.type
    this.remoteTraceback = error.traceback
    this.retryable = error.retryable
    this.path = error.path
    this.op = op
    this.id = id
    if (error.traceback.length > 0) {
      this.stack = `${this.stack}\n--- remote traceback (worker) ---\n${error.traceback.join('')}`
    }
  }
}

/** The worker process exited or its connection went away while requests were pending. */
export class WorkerDiedError extends Error {
  override name = 'WorkerDiedError'
  constructor(
    message: string,
    readonly exitCode: number | null = null,
    readonly signal: string | null = null,
    readonly stderrTail: string = '',
  ) {
    super(stderrTail ? `${message}\n--- last worker output ---\n${stderrTail}` : message)
  }
}

/** A request passed its deadline. `stalled` when the worker was still busy on it. */
export class DeadlineError extends Error {
  override name = 'DeadlineError'
  constructor(message: string, readonly op: string, readonly id: number, readonly stalled: boolean) {
    super(message)
  }
}

/** A message from the worker broke the protocol (bad header, sizes that do not add up). */
export class ProtocolError extends Error {
  override name = 'ProtocolError'
}

/** The client was closed while the request was queued or in flight. */
export class ClosedError extends Error {
  override name = 'ClosedError'
}

/** An error's message, or the thrown value as text. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}
