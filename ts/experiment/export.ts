// `prcl weights export`: a trained run's ResNet trunk as a backbone weights file, for another run's
// model.pretrained — the way a network trained on one task starts another (the demo pretrains on
// scenes of some digits and starts from it on the others, as the paper starts from ImageNet).
//
// A checkpoint's worker state is safetensors (py/prcl_worker/state.py): tensors named by index, and
// in the metadata one JSON string whose `net` entry lists the network's state-dict keys with their
// tensor's index. The trunk's keys are `<model>.backbone.<name>`; the file written holds `<name>`
// → the same bytes, as a torchvision-style trunk state dict the worker loads.
import { closeSync, openSync, readSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { resolve } from 'node:path'
import { verifyCheckpoint, writeDurable } from './checkpoint.ts'

/** The worker state's format (py/prcl_worker/state.py FORMAT). */
const STATE_FORMAT = 'prcl-worker-state/1'
/** Headers above this are not a worker state (a worker's header is a few hundred kB). */
const MAX_HEADER = 64 << 20

export interface ExportOptions {
  /** The run directory. */
  run: string
  checkpoint?: 'best' | 'latest'
  /** Whose trunk: the EMA teacher's (what the run evaluates by default) or the student's. */
  model?: 'teacher' | 'student'
  /** The file to write (safetensors). */
  out: string
}

export interface ExportResult { out: string; tensors: number; bytes: number; sha256: string; step: number; backbone: string; width: number; model: string }

interface TensorInfo { dtype: string; shape: number[]; data_offsets: [number, number] }

/** Reads a safetensors file's header: its tensors and metadata, and where the data starts. */
function readHeader(fd: number, path: string): { header: Record<string, TensorInfo> & { __metadata__?: Record<string, string> }; dataStart: number } {
  const len = Buffer.alloc(8)
  if (readSync(fd, len, 0, 8, 0) !== 8) throw new Error(`${path} is too short to be a safetensors file`)
  const n = Number(len.readBigUInt64LE(0))
  if (n <= 0 || n > MAX_HEADER) throw new Error(`${path} is not a safetensors worker state (header of ${n} bytes)`)
  const buf = Buffer.alloc(n)
  if (readSync(fd, buf, 0, n, 8) !== n) throw new Error(`${path} is truncated (its header says ${n} bytes)`)
  try {
    return { header: JSON.parse(buf.toString('utf8')), dataStart: 8 + n }
  } catch (e) {
    throw new Error(`${path}: its safetensors header is not JSON (${(e as Error).message})`, { cause: e })
  }
}

/** The `net` state dict's keys → tensor index, from the worker state's metadata. */
function netKeys(meta: unknown, path: string): Map<string, number> {
  const entries = (meta as { __dict__?: Array<[string, unknown]> } | null)?.__dict__
  const net = entries?.find(([k]) => k === 'net')?.[1] as { __dict__?: Array<[string, { __tensor__?: number }]> } | undefined
  if (!net?.__dict__) throw new Error(`${path}: the worker state holds no network`)
  return new Map(net.__dict__.filter(([, v]) => typeof v?.__tensor__ === 'number').map(([k, v]) => [k, v.__tensor__!]))
}

export async function exportBackbone(o: ExportOptions): Promise<ExportResult> {
  const model = o.model ?? 'teacher'
  const ck = await verifyCheckpoint(resolve(o.run, 'checkpoints', o.checkpoint ?? 'best'))
  const path = ck.workerFile
  if (!path.endsWith('.safetensors')) throw new Error(`${path} is a worker state of the earlier torch format: resume the run for one more checkpoint (written as safetensors), then export`)
  const fd = openSync(path, 'r')
  try {
    const { header, dataStart } = readHeader(fd, path)
    const md = header.__metadata__
    if (md?.format !== STATE_FORMAT) throw new Error(`${path} is not a worker state (format ${JSON.stringify(md?.format)}, expected ${STATE_FORMAT})`)
    const prefix = `${model}.backbone.`
    const keys = [...netKeys(JSON.parse(md.meta ?? 'null'), path)].filter(([k]) => k.startsWith(prefix))
    if (keys.length === 0) throw new Error(`${path}: no ${prefix}* tensors in the network`)
    const out: Record<string, TensorInfo> = {}
    const parts: Buffer[] = []
    let offset = 0
    for (const [key, index] of keys) {
      const info = header[String(index)]
      if (!info || !Array.isArray(info.data_offsets)) throw new Error(`${path}: tensor ${index} (${key}) is not in the file`)
      const [a, b] = info.data_offsets
      const bytes = Buffer.alloc(b - a)
      if (readSync(fd, bytes, 0, b - a, dataStart + a) !== b - a) throw new Error(`${path} is truncated (tensor ${key})`)
      out[key.slice(prefix.length)] = { dtype: info.dtype, shape: info.shape, data_offsets: [offset, offset + bytes.length] }
      parts.push(bytes)
      offset += bytes.length
    }
    const { backbone, width } = ck.config.model
    // The run's name, not its path: the same run exported elsewhere gives the same bytes.
    const metadata = { format: 'prcl-backbone/1', backbone, width: String(width), model, run: ck.config.name, step: String(ck.state.step) }
    let json = JSON.stringify({ __metadata__: metadata, ...out })
    json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8) // the data starts 8-byte aligned
    const head = Buffer.alloc(8)
    head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)))
    const file = Buffer.concat([head, Buffer.from(json, 'utf8'), ...parts])
    const target = resolve(o.out)
    await writeDurable(target, file)
    return {
      out: target, tensors: keys.length, bytes: file.length, sha256: createHash('sha256').update(file).digest('hex'),
      step: ck.state.step, backbone, width, model,
    }
  } finally {
    closeSync(fd)
  }
}
