// What can be wrong with a group of workers: the error a group fails with, naming the ranks at
// fault, and the checks of the hellos of a group's ranks taken together.
import type { Hello } from '../wire/envelope.ts'

/** A group that could not start, was refused, or lost a rank; `ranks` are the ranks at fault. */
export class WorkerGroupError extends Error {
  override name = 'WorkerGroupError'
  constructor(message: string, readonly ranks: number[], options?: { cause?: unknown }) {
    super(message, options)
  }
}

export interface GroupIssue { message: string; ranks: number[] }

/** What is wrong with a group's hellos (index = the rank each worker was started as; null: no
 *  hello): every rank in a group of `size`, 0..size−1 each exactly once, and one protocol, schema,
 *  torch version, backend and rendezvous across them. Empty when the group is sound. */
export function groupHelloIssues(hellos: ReadonlyArray<Hello | null | undefined>, size: number): GroupIssue[] {
  const issues: GroupIssue[] = []
  const add = (ranks: number[], message: string) => issues.push({ message, ranks })
  if (hellos.length !== size) add([], `${hellos.length} workers for a world of ${size}`)
  type Joined = { r: number; h: Hello; d: NonNullable<Hello['dist']> }
  const joined: Joined[] = []
  hellos.forEach((h, r) => {
    if (!h) return add([r], `rank ${r}: no hello`)
    const d = h.dist
    if (!d) return add([r], `rank ${r} (pid ${h.pid}) runs alone (hello.dist is ${d === null ? 'null' : 'missing'}): its worker did not join a torch.distributed group`)
    if (d.world_size !== size) add([r], `rank ${r} (pid ${h.pid}) is in a world of ${d.world_size}, not ${size}`)
    joined.push({ r, h, d })
  })
  for (let k = 0; k < size; k++) {
    const by = joined.filter((j) => j.d.rank === k)
    if (by.length === 0 && hellos[k]?.dist) add([k], `no worker is rank ${k}`)
    if (by.length > 1) add(by.map((j) => j.r), `rank ${k} is claimed by ${by.length} workers (pids ${by.map((j) => j.h.pid).join(', ')})`)
  }
  for (const j of joined) if (j.d.rank >= size) add([j.r], `a worker (pid ${j.h.pid}) says it is rank ${j.d.rank}, outside 0..${size - 1}`)
  const ref = joined[0]
  if (ref) {
    const fields: Array<[string, (j: Joined) => unknown]> = [
      ['protocol', (j) => j.h.protocol], ['schema hash', (j) => j.h.schema_hash], ['torch', (j) => j.h.torch],
      ['backend', (j) => j.d.backend], ['rendezvous', (j) => j.d.master],
    ]
    for (const [name, get] of fields) {
      for (const j of joined.slice(1)) {
        if (get(j) !== get(ref)) add([j.r], `rank ${j.r} has ${name} ${JSON.stringify(get(j))}, rank ${ref.r} ${JSON.stringify(get(ref))}`)
      }
    }
  }
  const byDevice = new Map<string, number[]>()
  hellos.forEach((h, r) => { if (h?.device.startsWith('cuda')) byDevice.set(h.device, [...(byDevice.get(h.device) ?? []), r]) })
  for (const [dev, ranks] of byDevice) if (ranks.length > 1) add(ranks, `ranks ${ranks.join(', ')} share device ${dev} (set world.devices, one per rank)`)
  return issues
}
