// The worker's configure arguments for an experiment configuration.
import type { ExperimentConfig } from '../config/schema.ts'
import type { WorkerSettings } from '../worker/settings.ts'

export function workerSettings(cfg: ExperimentConfig): WorkerSettings {
  return {
    seed: cfg.seed,
    deterministic: cfg.deterministic,
    threads: cfg.worker.threads,
    model: cfg.model,
    ema: cfg.ema,
    teacher: cfg.teacher,
    optim: {
      momentum: cfg.optim.momentum, nesterov: cfg.optim.nesterov, weight_decay: cfg.optim.weight_decay,
      decay_norm_and_bias: cfg.optim.decay_norm_and_bias, grad_clip: cfg.optim.grad_clip,
    },
    amp: cfg.amp,
    channels_last: cfg.channels_last,
    loss: cfg.loss,
  }
}
