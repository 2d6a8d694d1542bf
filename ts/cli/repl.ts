// `prcl repl`: a notebook-style TypeScript REPL with a connected worker and the API in scope.
// node:repl does not understand TypeScript, so each input goes through esbuild first (falling
// back to the raw text, which lets the REPL detect unfinished multi-line input).
import nodeRepl from 'node:repl'
import { parseArgs } from 'node:util'
import { transformSync } from 'esbuild'

export async function repl(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args, strict: true,
    options: { device: { type: 'string' }, python: { type: 'string' }, quiet: { type: 'boolean' } },
  })
  const prcl = await import('../index.ts')
  const worker = await prcl.Worker.start({ device: values.device, python: values.python, log: values.quiet ? 'silent' : 'inherit' })
  const h = worker.hello
  if (!values.quiet) {
    console.log(`prcl repl — worker pid ${h.pid} on ${h.device} (torch ${h.torch}); ops: ${Object.keys(h.ops).join(', ')}`)
    console.log(`in scope: worker, tensor, Worker, WorkerError, … (everything 'prcl' exports). Try:`)
    console.log(`  await worker.call('ping', { payload: 42 })`)
    console.log(`  const r = await worker.call('echo', {}, { tensors: { x: tensor(new Float32Array([1, 2, 3])) } })`)
  }
  // useGlobal: one realm, so typed arrays made at the prompt are the driver's typed arrays.
  const r = nodeRepl.start({ prompt: 'prcl> ', useGlobal: true, ignoreUndefined: true })
  Object.assign(r.context, prcl, { worker, prcl })
  const evaluate = r.eval.bind(r)
  ;(r as { eval: typeof r.eval }).eval = (code, context, file, cb) => {
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
  return new Promise((resolve) => {
    r.on('exit', () => { worker.close().finally(() => resolve(0)) })
  })
}
