// `prcl synth --out DIR [--kind shapes|digits] [--seed N] [--images N] [--val N] [--labeled N[,N...]]
//   [--size N] [--classes N]` plus each kind's own options.
import { generateDigits } from '../data/digits.ts'
import { generateSynthetic } from '../data/synth.ts'
import { parseCommand } from './args.ts'
import { synth as SYNTH } from './commands.ts'
import { UsageError } from './usage.ts'

const SHAPES_ONLY = ['hue-spread', 'any-hue'] as const
const DIGITS_ONLY = ['per-image', 'digit-size', 'rotation', 'thicken'] as const

export async function synth(args: string[]): Promise<number> {
  const { values } = parseCommand(SYNTH, args)
  const digits = values.kind === 'digits'
  const other = (digits ? SHAPES_ONLY : DIGITS_ONLY).filter((k) => values[k] !== undefined)
  if (other.length) throw new UsageError(`--${other[0]} is a ${digits ? 'shapes' : 'digits'} option; this is --kind ${values.kind}`, 'synth')
  const pair = (name: 'per-image' | 'digit-size') => {
    const v = values[name]
    if (v !== undefined && v.length !== 2) throw new UsageError(`--${name} takes MIN,MAX, got ${v.join(',')}`, 'synth')
    return v as [number, number] | undefined
  }
  const labeled = values.labeled
  if (!digits && labeled && labeled.length > 1) throw new UsageError('--labeled takes one count for --kind shapes (several sizes: --kind digits)', 'synth')
  const common = { out: values.out, seed: values.seed, images: values.images, val: values.val, size: values.size, classes: values.classes }
  const s = digits
    ? await generateDigits({ ...common, labeled, perImage: pair('per-image'), digitSize: pair('digit-size'), rotation: values.rotation, thicken: values.thicken })
    : await generateSynthetic({ ...common, labeled: labeled?.[0], hueSpread: values['hue-spread'], anyHue: values['any-hue'] })
  if (values.json) console.log(JSON.stringify(s))
  else {
    const split = 'splits' in s ? s.splits : [{ dir: s.splitDir, labeled: s.labeled }]
    console.log(`wrote ${s.files} files to ${s.out}: ${s.ids.train.length} train (labeled: ${split.map((x) => x.labeled.length).join(', ')}), ${s.ids.val.length} val, classes ${s.classes.join(', ')}`)
    for (const x of split) console.log(`splits in ${x.dir}`)
  }
  return 0
}
