// The worker's configure arguments for an experiment configuration: what the worker builds.
// Everything that varies per step travels in the step plan instead (ts/policy/).
import { dirname, resolve } from 'node:path'
import type { Static } from 'typebox'
import type { ExperimentConfig } from '../config/schema.ts'
import type { ConfigureArgs } from '../wire/ops/training.ts'
import type { PretrainedWeights } from '../weights/resolve.ts'

export type WorkerSettings = Static<typeof ConfigureArgs>

/** `pretrained`: the weights the network starts from, resolved (ts/weights/resolve.ts), or null
 *  (random, or a checkpoint is loaded next). `where.runDir`: the run directory, the only one the
 *  worker may write in (checkpoints); it may read there and in the weights' directory. Without it
 *  the worker is not confined. */
export function workerSettings(cfg: ExperimentConfig, pretrained: PretrainedWeights | null, where?: { runDir: string }): WorkerSettings {
  const paths = where ? {
    paths: { write: [resolve(where.runDir)], read: pretrained === null ? [] : [dirname(pretrained.path)] },
  } : {}
  return {
    seed: cfg.seed,
    deterministic: cfg.deterministic,
    threads: cfg.worker.threads,
    model: { ...cfg.model, pretrained },
    optim: {
      momentum: cfg.optim.momentum, nesterov: cfg.optim.nesterov, weight_decay: cfg.optim.weight_decay,
      decay_norm_and_bias: cfg.optim.decay_norm_and_bias, grad_clip: cfg.optim.grad_clip,
    },
    amp: cfg.amp,
    channels_last: cfg.channels_last,
    loss: cfg.loss,
    ...(cfg.data.reader === 'rank' ? { data_root: resolve(cfg.data.root) } : {}),
    distributed: {
      sync_bn: cfg.world.sync_bn, teacher_sync_bn: cfg.world.teacher_sync_bn ?? cfg.world.sync_bn,
      broadcast_buffers: cfg.world.broadcast_buffers, prototypes: cfg.world.prototypes,
    },
    ...paths,
  }
}
