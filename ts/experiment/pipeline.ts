// The step pipeline: a plan's samples are read and the request is on the wire while the worker
// computes the step before it (at most `depth` steps in flight); replies are taken in order.
// With several ranks each gets its shard of the global plan (ts/policy/shard.ts), all ranks'
// shards of a step are sent together, and the step's reply is rank 0's (the ranks reduce their
// losses and statistics, so every rank answers the same). With data.reader rank the driver sends
// each rank the paths of its shard's files, relative to the data root, and the rank reads them.
import { readFile } from 'node:fs/promises'
import { relative } from 'node:path'
import { readSample } from '../data/dataset.ts'
import type { StepPlan } from '../policy/plan.ts'
import { shardPlan } from '../policy/shard.ts'
import type { CallResult } from '../wire/connection.ts'
import { WorkerError } from '../wire/errors.ts'
import type { OpResult } from '../wire/ops/index.ts'
import { bytesTensor, type Tensors } from '../wire/tensor.ts'
import type { WorkerGroup } from '../worker/group.ts'
import type { RunData } from './data.ts'
import type { Recorder } from './record.ts'

type StepReply = CallResult<OpResult<'train_step'>>

export class Pipeline {
  private inflight: Array<{ plan: StepPlan; reply: Promise<StepReply> }> = []

  /** `truth`: send the unlabeled images' ground truth where every one has it (lbl_u.<i>, for the
   *  worker's pseudo-label quality counts; no loss reads it). `rankRoot`: the data root the ranks
   *  read their files under (data.reader rank), or null: the driver sends the bytes. */
  constructor(private group: WorkerGroup, private data: RunData, private recorder: Recorder | null,
    private onDone: (plan: StepPlan, result: OpResult<'train_step'>) => void, private truth = false,
    private rankRoot: string | null = null) {}

  /** Read each rank's samples, record the request (one worker only) and send every rank its shard. */
  async send(plan: StepPlan): Promise<void> {
    const size = this.group.size
    const shards = Array.from({ length: size }, (_, r) => shardPlan(plan, r, size))
    const reads = await Promise.all(shards.map((s) => (this.rankRoot === null ? readStep(s, this.data, this.truth) : Promise.resolve(stepFiles(s, this.data, this.truth, this.rankRoot)))))
    if (size === 1) this.recorder?.write('train_step', plan, reads[0]!.tensors)
    const replies = shards.map((shard, r) => this.group.call(r, 'train_step', { ...shard, ...reads[r]!.body }, { tensors: reads[r]!.tensors, timeoutMs: 3_600_000 })
      .catch((e) => { throw nameFile(e, reads[r]!.files) }))
    const reply = Promise.all(replies).then((rs) => rs[0]!)
    reply.catch(() => undefined) // awaited in order by drain; this keeps an early failure from being "unhandled"
    this.inflight.push({ plan, reply })
  }

  /** Wait for replies, oldest first, until at most `keep` steps are in flight. */
  async drain(keep: number): Promise<void> {
    while (this.inflight.length > keep) {
      const { plan, reply } = this.inflight.shift()!
      this.onDone(plan, (await reply).body)
    }
  }
}

interface StepRead {
  tensors: Tensors
  /** Added to the request: the files a rank reads (data.reader rank). */
  body: { files?: { img_l: string[]; lbl_l: string[]; img_u: string[]; lbl_u?: string[] } }
  files: Record<string, string[]>
}

/** The plan's samples and their files (the unlabeled ground truth where every one has it). */
function stepRefs(plan: StepPlan, data: RunData, truth: boolean) {
  const lrefs = plan.samples.labeled.map((i) => data.labeled[i]!)
  const urefs = plan.samples.unlabeled.map((i) => data.unlabeled[i]!)
  const withTruth = truth && urefs.length > 0 && urefs.every((r) => r.truth)
  const files = { img_l: lrefs.map((r) => r.image), lbl_l: lrefs.map((r) => r.label ?? ''), img_u: urefs.map((r) => r.image), lbl_u: withTruth ? urefs.map((r) => r.truth!) : [] }
  return { lrefs, urefs, withTruth, files }
}

/** The plan's files, relative to the data root, for the rank to read (its errors name them). */
function stepFiles(plan: StepPlan, data: RunData, truth: boolean, root: string): StepRead {
  const { withTruth, files } = stepRefs(plan, data, truth)
  const rel = (list: string[]) => list.map((f) => relative(root, f))
  return {
    tensors: {},
    body: { files: { img_l: rel(files.img_l), lbl_l: rel(files.lbl_l), img_u: rel(files.img_u), ...(withTruth ? { lbl_u: rel(files.lbl_u) } : {}) } },
    files,
  }
}

/** The encoded bytes of the plan's samples, as the step's tensors, and their files. */
async function readStep(plan: StepPlan, data: RunData, truth: boolean): Promise<StepRead> {
  const { lrefs, urefs, withTruth, files } = stepRefs(plan, data, truth)
  const [ls, us, ts] = await Promise.all([
    Promise.all(lrefs.map((r) => readSample(r))), Promise.all(urefs.map((r) => readSample(r))),
    withTruth ? Promise.all(urefs.map((r) => readFile(r.truth!))) : [],
  ])
  const tensors: Tensors = {}
  ls.forEach((s, i) => { tensors[`img_l.${i}`] = bytesTensor(s.image); tensors[`lbl_l.${i}`] = bytesTensor(s.label!) })
  us.forEach((s, i) => { tensors[`img_u.${i}`] = bytesTensor(s.image) })
  ts.forEach((b, i) => { tensors[`lbl_u.${i}`] = bytesTensor(b) })
  return { tensors, body: {}, files }
}

/** A worker error about one of a step's tensors (say `tensors.lbl_l.1`) names that tensor's file. */
function nameFile(e: unknown, files: Record<string, string[]>): unknown {
  const m = e instanceof WorkerError ? /^(?:tensors|files)\.(img_l|lbl_l|img_u|lbl_u)\.(\d+)$/.exec(e.path ?? '') : null
  const file = m ? files[m[1]!]?.[Number(m[2])] : undefined
  if (!file) return e
  const err = new Error(`${file}: ${(e as WorkerError).message}`)
  ;(err as Error & { cause?: unknown }).cause = e
  return err
}
