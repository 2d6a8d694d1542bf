// The loss composition, declared as data: terms with an op from the worker's fixed registry,
// inputs named by model output or batch tensor (or another term), params and a weight.
import Type, { type Static } from 'typebox'
import { LABELED_ONLY_REFS } from './ops.ts'
import { Schedule, ScheduleOrNumber } from './schedule.ts'

const Scalar = Type.Union([Type.Number(), Type.String(), Type.Boolean(), Type.Null()])
/** A term's params as a step uses them: plain values. */
export const ResolvedParams = Type.Record(Type.String(), Scalar)
export type ResolvedParams = Static<typeof ResolvedParams>

export const InputRef = Type.String({ pattern: '^(model|batch|term)\\.[A-Za-z_][A-Za-z0-9_]*$' })

export const LossTerm = Type.Object({
  name: Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]{0,63}$' }),
  op: Type.String({ pattern: '^[a-z][a-z0-9_]{0,63}$' }),
  inputs: Type.Record(Type.String(), InputRef),
  // A numeric param may follow a schedule (a threshold, say); each step carries its value.
  params: Type.Optional(Type.Record(Type.String(), Type.Union([Scalar, Schedule]))),
  weight: ScheduleOrNumber,
  enabled: Type.Optional(Type.Boolean()),
}, { additionalProperties: false })
export type LossTerm = Static<typeof LossTerm>

export const LossSpec = Type.Object({
  version: Type.Literal(1),
  terms: Type.Array(LossTerm, { minItems: 1, maxItems: 32 }),
}, { additionalProperties: false, $id: 'prcl/loss-spec' })
export type LossSpec = Static<typeof LossSpec>


/** Whether the enabled terms read nothing but the labeled batch's logits and labels: then a step
 *  needs no unlabeled images (a supervised-only baseline pays for what it uses). */
export function readsOnlyLabeled(spec: LossSpec): boolean {
  return spec.terms.filter((t) => t.enabled !== false)
    .every((t) => Object.values(t.inputs).every((ref) => ref.startsWith('term.') || LABELED_ONLY_REFS.includes(ref)))
}
