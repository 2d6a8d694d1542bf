// `prcl synth --out DIR [--seed N] [--images N] [--val N] [--size N] [--classes N] [--labeled N]
//   [--hue-spread X] [--any-hue P]`
import { parseArgs } from 'node:util'
import { generateSynthetic } from '../data/synth.ts'
import { UsageError } from './usage.ts'

export async function synth(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args, strict: true,
    options: {
      out: { type: 'string' }, seed: { type: 'string' }, images: { type: 'string' }, val: { type: 'string' },
      size: { type: 'string' }, classes: { type: 'string' }, labeled: { type: 'string' }, json: { type: 'boolean' },
      'hue-spread': { type: 'string' }, 'any-hue': { type: 'string' },
    },
  })
  if (!values.out) throw new UsageError('synth needs --out DIR')
  const num = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined
    const n = Number(v)
    if (!Number.isInteger(n)) throw new UsageError(`--${name} must be an integer, got '${v}'`)
    return n
  }
  const real = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined
    const n = Number(v)
    if (v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got '${v}'`)
    return n
  }
  const summary = await generateSynthetic({
    out: values.out, seed: num('seed', values.seed), images: num('images', values.images), val: num('val', values.val),
    size: num('size', values.size), classes: num('classes', values.classes), labeled: num('labeled', values.labeled),
    hueSpread: real('hue-spread', values['hue-spread']), anyHue: real('any-hue', values['any-hue']),
  })
  if (values.json) console.log(JSON.stringify(summary))
  else {
    console.log(`wrote ${summary.files} files to ${summary.out}: ${summary.ids.train.length} train (${summary.labeled.length} labeled), ${summary.ids.val.length} val, classes ${summary.classes.join(', ')}`)
    console.log(`splits in ${summary.splitDir}`)
  }
  return 0
}
