// `prcl predict --run DIR [--checkpoint best|latest] [--model teacher|student] --out DIR IMAGE...`:
// class maps as palette PNGs (the dataset's colours) and, with --var, the σ² map as a heat map
// (<image>.var.png) with its scale beside it (<image>.var.json: the σ² at the lowest and highest
// colour), for each image; it says which checkpoint and network it used.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { basename, extname, join } from 'node:path'
import { encodeLabelPng, encodeRgbPng } from '../data/png.ts'
import { heat, paletteFor } from '../report/pictures.ts'
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
  const { worker, checkpoint } = await loadCheckpointWorker(values.run, values.checkpoint, { python: values.python })
  const palette = paletteFor(checkpoint.config.data.dataset)
  console.log(`checkpoint ${checkpoint.dir} (step ${checkpoint.state.step}, epoch ${checkpoint.state.epoch}), ${model} network`)
  try {
    mkdirSync(values.out, { recursive: true })
    for (const [i, file] of positionals.entries()) {
      const tensors: Tensors = { 'img.0': bytesTensor(images[i]!) }
      const r = await worker.call('predict', { model, outputs: values.var ? ['classes', 'var'] : ['classes'] }, { tensors, timeoutMs: 600_000 })
        .catch((e: Error) => { throw nameSamples(e, [{ image: file, label: null }]) })
      const cls = r.tensors['classes.0']!
      const [h, w] = cls.shape as [number, number]
      const stem = basename(file, extname(file))
      writeFileSync(join(values.out, `${stem}.png`), encodeLabelPng(w, h, cls.data as Uint8Array, palette))
      if (values.var) {
        const v = r.tensors['var.0']!.data as Float32Array
        let lo = Infinity, hi = -Infinity
        for (const x of v) { lo = Math.min(lo, x); hi = Math.max(hi, x) }
        const rgb = new Uint8Array(w * h * 3)
        v.forEach((x, i) => rgb.set(heat((x - lo) / Math.max(hi - lo, 1e-12)), i * 3))
        writeFileSync(join(values.out, `${stem}.var.png`), encodeRgbPng(w, h, rgb))
        writeFileSync(join(values.out, `${stem}.var.json`), JSON.stringify({
          image: file, checkpoint: checkpoint.dir, step: checkpoint.state.step, model,
          var_min: lo, var_max: hi, colours: { low: heat(0), high: heat(1) },
          scale: 'linear: σ² (the mean over representation dimensions) var_min at the low colour, var_max at the high one',
        }, null, 2))
      }
      console.log(`${file} → ${join(values.out, `${stem}.png`)}`)
    }
  } finally {
    await worker.close()
  }
  return 0
}
