// `prcl predict --run DIR [--checkpoint best|latest] --out DIR IMAGE...`: class maps as palette
// PNGs (VOC colours) and, with --var, the σ² map scaled to 8 bits, for each image.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { basename, extname, join } from 'node:path'
import { encodeLabelPng, encodeRgbPng } from '../data/png.ts'
import { checkImageBytes } from '../data/check.ts'
import { loadCheckpointWorker, nameSamples } from '../experiment/evaluate.ts'
import { bytesTensor, type Tensors } from '../wire/tensor.ts'
import { parseCommand } from './args.ts'
import { predict as PREDICT } from './commands.ts'
import { checkRunDir } from './run-dir.ts'
import { CommandError } from './usage.ts'

/** Every image read and checked before a worker starts: all that cannot be used, named at once. */
function readImages(files: string[]): Buffer[] {
  const problems: string[] = []
  const out = files.map((file) => {
    try {
      const bytes = readFileSync(file)
      checkImageBytes(bytes, 'full')
      return bytes
    } catch (e) {
      const err = e as NodeJS.ErrnoException
      problems.push(err.code === 'ENOENT' ? `${file} does not exist` : err.code ? `cannot read ${file}: ${err.message}` : `${file}: ${err.message}`)
      return Buffer.alloc(0)
    }
  })
  if (problems.length) {
    throw new CommandError(`${problems.length} of ${files.length} image${files.length === 1 ? '' : 's'} cannot be used (nothing was predicted): ${problems.join('; ')}`)
  }
  return out
}

export async function predictCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(PREDICT, args)
  const model = values.model
  checkRunDir(values.run, values.checkpoint)
  const images = readImages(positionals)
  const { worker } = await loadCheckpointWorker(values.run, values.checkpoint, undefined, values.python)
  try {
    mkdirSync(values.out, { recursive: true })
    for (const [i, file] of positionals.entries()) {
      const tensors: Tensors = { 'img.0': bytesTensor(images[i]!) }
      const r = await worker.call('predict', { model, outputs: values.var ? ['classes', 'var'] : ['classes'] }, { tensors, timeoutMs: 600_000 })
        .catch((e: Error) => { throw nameSamples(e, [{ image: file, label: null }]) })
      const cls = r.tensors['classes.0']!
      const [h, w] = cls.shape as [number, number]
      const stem = basename(file, extname(file))
      writeFileSync(join(values.out, `${stem}.png`), encodeLabelPng(w, h, cls.data as Uint8Array))
      if (values.var) {
        const v = r.tensors['var.0']!.data as Float32Array
        let lo = Infinity, hi = -Infinity
        for (const x of v) { lo = Math.min(lo, x); hi = Math.max(hi, x) }
        const grey = Uint8Array.from(v, (x) => Math.round(((x - lo) / Math.max(hi - lo, 1e-12)) * 255))
        const rgb = new Uint8Array(w * h * 3)
        grey.forEach((g, i) => rgb.set([g, g, g], i * 3))
        writeFileSync(join(values.out, `${stem}.var.png`), encodeRgbPng(w, h, rgb))
      }
      console.log(`${file} → ${join(values.out, `${stem}.png`)}`)
    }
  } finally {
    await worker.close()
  }
  return 0
}
