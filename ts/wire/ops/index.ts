// The op registry as the driver knows it. The worker advertises the same table in hello,
// read from the generated schemas/ops.json; a schema hash mismatch is refused at connect.
import type { Static } from 'typebox'
import { bridgeOps } from './bridge.ts'
import { probeOps, trainingOps } from './training.ts'
import type { OpSpec } from './spec.ts'

export const OPS = { ...bridgeOps, ...trainingOps, ...probeOps }
export type Ops = typeof OPS
export type OpName = keyof Ops
export type OpArgs<K extends OpName> = Static<Ops[K]['args']>
export type OpResult<K extends OpName> = Static<Ops[K]['result']>
export type { OpSpec }
