// `prcl keys --out DIR [--force]`: the CURVE certificates of a driver and its remote workers.
import { resolve } from 'node:path'
import { writeKeys } from '../wire/curve.ts'
import { parseCommand } from './args.ts'
import { keys as KEYS } from './commands.ts'
import { CommandError } from './usage.ts'

export async function keysCommand(args: string[]): Promise<number> {
  const { values } = parseCommand(KEYS, args)
  const dir = resolve(values.out)
  let files: string[]
  try {
    files = writeKeys(dir, { force: values.force })
  } catch (e) {
    throw new CommandError((e as Error).message)
  }
  console.log(`wrote ${files.join(', ')}`)
  console.log(`driver: world.keys = ${JSON.stringify(dir)}`)
  console.log(`each worker node: copy driver.key and worker.key_secret into a directory (chmod 700), then`)
  console.log(`  torchrun … -m prcl_worker --connect tcp://DRIVER:PORT --keys THAT_DIR`)
  return 0
}
