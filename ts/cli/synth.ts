// `prcl synth --out DIR [--seed N] [--images N] [--val N] [--size N] [--classes N] [--labeled N]
//   [--hue-spread X] [--any-hue P]`
import { generateSynthetic } from '../data/synth.ts'
import { parseCommand } from './args.ts'
import { synth as SYNTH } from './commands.ts'

export async function synth(args: string[]): Promise<number> {
  const { values } = parseCommand(SYNTH, args)
  const summary = await generateSynthetic({
    out: values.out, seed: values.seed, images: values.images, val: values.val,
    size: values.size, classes: values.classes, labeled: values.labeled,
    hueSpread: values['hue-spread'], anyHue: values['any-hue'],
  })
  if (values.json) console.log(JSON.stringify(summary))
  else {
    console.log(`wrote ${summary.files} files to ${summary.out}: ${summary.ids.train.length} train (${summary.labeled.length} labeled), ${summary.ids.val.length} val, classes ${summary.classes.join(', ')}`)
    console.log(`splits in ${summary.splitDir}`)
  }
  return 0
}
