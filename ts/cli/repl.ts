// `prcl repl`: a notebook-style TypeScript REPL with a connected worker and the API in scope.
// node:repl does not understand TypeScript, so each input goes through esbuild first (falling
// back to the raw text, which lets the REPL detect unfinished multi-line input). Node's REPL then
// evaluates it; for an input with a top-level `await` it hoists the declarations (const, let,
// var, function, class, destructuring) out of the async wrapper it runs, so they persist.
//
// Inputs are evaluated one at a time, in order: a line that arrives while an earlier input is
// still awaiting waits for it. Node's REPL does that only on a terminal; with piped input it
// evaluates the next line at once, so `const r = await worker.call(…)` followed by `r` read `r`
// before the call had answered.
import { homedir } from 'node:os'
import { join } from 'node:path'
import nodeRepl, { type REPLServer } from 'node:repl'
import { inspect, type InspectOptions } from 'node:util'
import { transformSync } from 'esbuild'
import { isDType } from '../wire/dtype.ts'
import type { Tensor } from '../wire/tensor.ts'
import { parseCommand } from './args.ts'
import { repl as REPL } from './commands.ts'

export interface ReplOptions {
  input?: NodeJS.ReadableStream
  output?: NodeJS.WritableStream
  /** Treat the streams as a terminal (line editing, history); default: output.isTTY. */
  terminal?: boolean
  /** Names put in scope (with useGlobal, on globalThis). */
  context?: Record<string, unknown>
  /** The history file; '' for none. Default: PRCL_REPL_HISTORY, else ~/.prcl_repl_history. */
  historyPath?: string
  prompt?: string
  /** Evaluate in this realm, so typed arrays made at the prompt are the driver's (default true). */
  useGlobal?: boolean
}

export interface Repl {
  server: REPLServer
  /** Resolves once no input is being evaluated or waiting. */
  idle(): Promise<void>
}

export function defaultHistoryPath(): string {
  return process.env.PRCL_REPL_HISTORY ?? join(homedir(), '.prcl_repl_history')
}

/** Starts a REPL server over the given streams; resolves once its history is loaded. */
export async function startRepl(o: ReplOptions = {}): Promise<Repl> {
  // Node's own writer is util.inspect with these options; ours shows tensors by dtype and shape.
  const options: InspectOptions = { ...inspect.defaultOptions, showProxy: true }
  const writer = Object.assign((v: unknown) => inspect(forDisplay(v), options), { options })
  const server = nodeRepl.start({
    prompt: o.prompt ?? 'prcl> ',
    input: o.input ?? process.stdin,
    output: o.output ?? process.stdout,
    ...(o.terminal === undefined ? {} : { terminal: o.terminal }),
    useGlobal: o.useGlobal ?? true,
    ignoreUndefined: true,
    preview: false,
    writer,
  })
  options.colors = server.useColors
  Object.assign(server.context, o.context ?? {})
  const idle = evaluateInOrder(server)
  const historyPath = o.historyPath ?? defaultHistoryPath()
  await new Promise<void>((resolve) => {
    server.setupHistory(historyPath, (err) => {
      if (err) server.output.write(`history not kept (${historyPath}): ${err.message}\n`)
      resolve()
    })
  })
  return { server, idle }
}

/** TypeScript in, one input at a time. Returns a function that waits until all input is done. */
function evaluateInOrder(server: REPLServer): () => Promise<void> {
  const [listener] = server.listeners('line') as Array<(line: string) => void>
  if (!listener) throw new Error('node:repl has no line listener to wrap')
  const onLine = listener
  server.removeListener('line', onLine)
  const queue: string[] = []
  let inFlight = false // an input's evaluation has started and its prompt is not back yet
  let fromLine = false // eval called by the line handler (not by tab completion)
  let pumping = false
  let waiters: Array<() => void> = []

  function pump() {
    if (pumping) return
    pumping = true
    try {
      while (!inFlight && queue.length > 0) {
        fromLine = true
        try { onLine.call(server, queue.shift()!) } finally { fromLine = false }
      }
    } finally {
      pumping = false
    }
    if (!inFlight && queue.length === 0) {
      const w = waiters
      waiters = []
      for (const f of w) f()
    }
  }
  // Named functions all the way: the REPL trims an error's stack at the last anonymous frame.
  server.on('line', function queueLine(line: string) { queue.push(line); pump() })

  // Every input ends with a prompt: a result, an error (through the REPL's domain, where the
  // eval callback is never called), an unfinished line waiting for more.
  const displayPrompt = server.displayPrompt.bind(server)
  server.displayPrompt = function promptAndContinue(preserveCursor?: boolean) {
    displayPrompt(preserveCursor)
    if (inFlight) {
      inFlight = false
      setImmediate(pump)
    }
  }

  const evaluate = server.eval.bind(server)
  ;(server as { eval: typeof server.eval }).eval = function transpileAndEval(code, context, file, cb) {
    if (fromLine) inFlight = true
    let js = code
    try {
      js = transformSync(code, { loader: 'ts', target: 'node20' }).code
    } catch (e) {
      // Unfinished input (a function over several lines): ask for the next line.
      if (/Unexpected end of file|Expected .* but found end of file/.test(String((e as Error).message))) {
        cb(new nodeRepl.Recoverable(e as Error), undefined)
        return
      }
    }
    evaluate(js, context, file, cb)
  }

  return () => new Promise<void>((resolve) => {
    waiters.push(resolve)
    pump()
  })
}

function isTensor(v: unknown): v is Tensor {
  if (v === null || typeof v !== 'object') return false
  const t = v as Partial<Tensor>
  return isDType(t.dtype) && Array.isArray(t.shape) && ArrayBuffer.isView(t.data)
}

/** How a tensor prints at the prompt: its dtype and shape, not its bytes. */
class TensorSummary {
  constructor(readonly dtype: string, readonly shape: readonly number[]) {}
  [inspect.custom](_depth: number, options: { stylize: (s: string, style: string) => string }): string {
    return options.stylize(`Tensor<${this.dtype}>[${this.shape.join(', ')}]`, 'special')
  }
}

/** The value with every tensor in it (inside plain objects and arrays) replaced by its summary;
 *  objects without tensors are returned as they are. */
export function forDisplay(v: unknown, seen = new Map<object, unknown>(), depth = 0): unknown {
  if (isTensor(v)) return new TensorSummary(v.dtype, v.shape)
  if (v === null || typeof v !== 'object' || depth > 16) return v
  if (seen.has(v)) return seen.get(v)
  seen.set(v, v)
  if (Array.isArray(v)) {
    const items = v.map((x) => forDisplay(x, seen, depth + 1))
    if (items.every((x, i) => x === v[i])) return v
    seen.set(v, items)
    return items
  }
  const proto = Object.getPrototypeOf(v) as unknown
  if (proto !== Object.prototype && proto !== null) return v // class instances, typed arrays, maps: as they are
  const descriptors = Object.getOwnPropertyDescriptors(v)
  let changed = false
  for (const key of Reflect.ownKeys(descriptors)) {
    const d = descriptors[key as keyof typeof descriptors]!
    if (!('value' in d)) continue
    const shown = forDisplay(d.value, seen, depth + 1)
    if (shown !== d.value) { d.value = shown; changed = true }
  }
  if (!changed) return v
  const copy = Object.create(proto as object | null, descriptors) as object
  seen.set(v, copy)
  return copy
}

export async function repl(args: string[]): Promise<number> {
  const { values } = parseCommand(REPL, args)
  const prcl = await import('../index.ts')
  const worker = await prcl.Worker.start({ device: values.device, python: values.python, log: values.quiet ? 'silent' : 'inherit' })
  const h = worker.hello
  if (!values.quiet) {
    console.log(`prcl repl — worker pid ${h.pid} on ${h.device} (torch ${h.torch}); ops: ${Object.keys(h.ops).join(', ')}`)
    console.log(`in scope: worker, tensor, Worker, WorkerError, … (everything 'prcl' exports). Try:`)
    console.log(`  await worker.call('ping', { payload: 42 })`)
    console.log(`  const r = await worker.call('echo', {}, { tensors: { x: tensor(new Float32Array([1, 2, 3])) } })`)
  }
  const { server, idle } = await startRepl({ context: { ...prcl, worker, prcl } })
  return new Promise((resolve) => {
    // The input may end (piped stdin) while earlier lines still await: finish them first.
    server.on('exit', () => { idle().then(() => worker.close()).finally(() => resolve(0)) })
  })
}
