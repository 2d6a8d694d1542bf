import type { TSchema } from 'typebox'

/** One op the worker serves: schemas of its body and result, and whether it takes tensors. */
export interface OpSpec<A extends TSchema = TSchema, R extends TSchema = TSchema> {
  args: A
  result: R
  tensors: 'none' | 'any'
  doc: string
}

export function op<A extends TSchema, R extends TSchema>(spec: OpSpec<A, R>): OpSpec<A, R> {
  return spec
}
