// schemas/*.json are generated from the typebox types; this module renders them and the hash
// both sides compare at connect (the worker hashes the files it loaded, the driver what it renders).
import { createHash } from 'node:crypto'
import { ENVELOPE_SCHEMAS } from './envelope.ts'
import { OPS } from './ops/index.ts'
import { LABELED_ONLY_REFS, LOSS_OPS, LOSS_REFS } from '../loss/ops.ts'
import { LossSpec } from '../loss/spec.ts'

const DRAFT7 = 'http://json-schema.org/draft-07/schema#'

function render(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n'
}

/** File name → file text, for every schema file the project checks in. */
export function schemaFiles(): Record<string, string> {
  const files: Record<string, string> = {}
  for (const [name, schema] of Object.entries(ENVELOPE_SCHEMAS)) {
    files[`${name}.json`] = render({ $schema: DRAFT7, ...schema })
  }
  const ops = Object.fromEntries(Object.entries(OPS).map(([name, spec]) => [name, {
    doc: spec.doc, tensors: spec.tensors, args: spec.args, result: spec.result,
  }]))
  files['ops.json'] = render({ $schema: DRAFT7, $id: 'prcl/ops', ops })
  files['loss-spec.json'] = render({ $schema: DRAFT7, ...LossSpec })
  const losses = Object.fromEntries(Object.entries(LOSS_OPS).map(([name, spec]) => [name, {
    doc: spec.doc, inputs: spec.inputs, params: spec.params,
  }]))
  files['losses.json'] = render({ $schema: DRAFT7, $id: 'prcl/losses', losses, refs: LOSS_REFS, labeled_only: LABELED_ONLY_REFS })
  return files
}

/** sha256 over the sorted file names and texts; the worker computes the same over the files. */
export function schemaHash(files: Record<string, string> = schemaFiles()): string {
  const h = createHash('sha256')
  for (const name of Object.keys(files).sort()) h.update(`${name}\n`).update(files[name]!)
  return h.digest('hex').slice(0, 16)
}
