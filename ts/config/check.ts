// The one configuration check every route goes through (preset, file, `extends`, `--set`, the
// API), before any run directory or worker exists: bounded input, the schema, the rules that
// tie settings together, the loss spec against the op registry and every schedule over the run.
import { Compile } from 'typebox/compile'
import { lossSpecIssues, type ScheduleRange } from '../loss/check.ts'
import { evaluate, scheduleTimes } from '../loss/schedule.ts'
import { readsOnlyLabeled } from '../loss/spec.ts'
import { listenIssue } from '../wire/curve.ts'
import { ConfigError, type ConfigIssue } from './errors.ts'
import { inputIssues } from './input.ts'
import { ExperimentConfig } from './schema.ts'
import { schemaIssues, type JsonSchema } from './schema-issues.ts'

const compiled = Compile(ExperimentConfig)
export const CONFIG_SCHEMA = ExperimentConfig as unknown as JsonSchema

/** The configuration, checked; or a ConfigError listing every problem found. */
export function checkConfig(config: unknown, source = 'configuration'): ExperimentConfig {
  const issues = configIssues(config)
  if (issues.length) throw new ConfigError(source, issues)
  return config as ExperimentConfig
}

export function configIssues(config: unknown): ConfigIssue[] {
  const input = inputIssues(config)
  if (input.length) return input
  const shape = schemaIssues(CONFIG_SCHEMA, config)
  if (shape.length) return shape
  const cfg = config as ExperimentConfig
  const rules = [...ruleIssues(cfg), ...lossSpecIssues(cfg.loss, scheduleRange(cfg))]
  if (rules.length) return rules
  // The walk above and typebox's compiled check must agree; if they do not, say so plainly.
  if (!compiled.Check(cfg)) {
    return [...compiled.Errors(cfg)].slice(0, 4).map((e) => ({ path: e.instancePath.split('/').slice(1).join('.'), expected: e.message }))
  }
  return []
}

export function scheduleRange(cfg: ExperimentConfig): ScheduleRange {
  return { end: cfg.sampling.epochs, stepwise: cfg.schedule_granularity === 'step' }
}

function ruleIssues(cfg: ExperimentConfig): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  const add = (path: string, value: unknown, expected: string) => issues.push({ path, value, expected })
  const ordered = (path: string, pair: number[]) => {
    if (pair[0]! > pair[1]!) add(path, pair, 'must be [low, high] with low ≤ high')
  }
  for (const which of ['labeled', 'unlabeled'] as const) {
    const d = cfg.data[which]
    ordered(`data.${which}.${which === 'labeled' ? 'scale' : 'rescale'}`, which === 'labeled' ? cfg.data.labeled.scale : cfg.data.unlabeled.rescale)
    ordered(`data.${which}.photometric.blur.sigma`, d.photometric.blur.sigma)
  }
  if (cfg.model.width !== 1 && cfg.model.backbone !== 'resnet18') {
    add('model.width', cfg.model.width, `must be 1 for ${cfg.model.backbone} (reduced widths exist for resnet18 only)`)
  }
  if (cfg.eval.ranks === 'each' && cfg.eval.protocol !== 'prcl_random_crop') {
    add('eval.ranks', 'each', `needs eval.protocol 'prcl_random_crop' (got '${cfg.eval.protocol}'): on whole images or windows every rank would compute the same score; use 'deal'`)
  }
  if (cfg.eval.protocol === 'sliding') {
    if (!cfg.eval.window) add('eval.window', cfg.eval.window, "must be [height, width] when eval.protocol is 'sliding'")
    if (!cfg.eval.stride) add('eval.stride', cfg.eval.stride, "must be [height, width] when eval.protocol is 'sliding'")
    if (cfg.eval.window && cfg.eval.stride && cfg.eval.stride.some((s, i) => s > cfg.eval.window![i]!)) {
      add('eval.stride', cfg.eval.stride, `must not exceed eval.window ${JSON.stringify(cfg.eval.window)} (pixels between windows would never be scored)`)
    }
  }
  if (cfg.teacher.bn_mode === 'eval' && cfg.ema.buffers === 'own') {
    add('teacher.bn_mode', 'eval', "needs ema.buffers 'copy' or 'ema': with 'own' the teacher's BatchNorm statistics never leave their initial values")
  }
  if (readsOnlyLabeled(cfg.loss) && cfg.ema.buffers === 'own') {
    add('ema.buffers', 'own', "must be 'ema' or 'copy' for a loss that reads only labeled images: such a step runs no teacher forward, so the teacher's own BatchNorm statistics would never move")
  }
  if (cfg.amp === 'fp16' && cfg.worker.device === 'cpu') add('amp', 'fp16', "needs a CUDA device; use 'bf16' or 'none' with worker.device 'cpu'")
  const w = cfg.world
  if (cfg.sampling.batch_size % w.size !== 0) {
    add('sampling.batch_size', cfg.sampling.batch_size, `must be a multiple of world.size ${w.size}: it is the global batch, and each rank takes batch_size / world.size images`)
  }
  if (w.devices) {
    if (w.devices.length !== w.size) add('world.devices', w.devices, `must list exactly world.size (${w.size}) devices, one per rank`)
    const cuda = w.devices.filter((d) => d.startsWith('cuda')).map((d) => (d === 'cuda' ? 'cuda:0' : d))
    const twice = cuda.filter((d, i) => cuda.indexOf(d) !== i)
    if (twice.length) add('world.devices', w.devices, `must name each CUDA device once (${[...new Set(twice)].join(', ')} is listed twice)`)
    if (cfg.amp === 'fp16' && w.devices.includes('cpu')) add('amp', 'fp16', "needs a CUDA device on every rank; world.devices lists 'cpu'")
  }
  if (w.listen !== null) {
    const why = listenIssue(w.listen, w.keys !== null, w.insecure)
    if (why) add('world.listen', w.listen, why.replace(`${w.listen} `, ''))
    if (w.devices) add('world.devices', w.devices, 'must be null with world.listen: ranks started by torchrun take the device of their LOCAL_RANK (start them with --device to choose)')
  } else if (w.keys !== null) {
    add('world.keys', w.keys, 'is set but world.listen is null: keys guard the endpoint remote ranks connect to; local ranks talk over ipc')
  }
  // BatchNorm in train mode needs two values per channel, and ASPP's pooled branch has one per image.
  if (cfg.sampling.batch_size / w.size === 1) {
    if (w.size === 1 || !w.sync_bn) {
      add('sampling.batch_size', cfg.sampling.batch_size, `gives each ${w.size === 1 ? 'step' : 'rank'} one image, too few for BatchNorm in train mode (ASPP's pooled branch would see one value per channel): use at least 2${w.size > 1 ? ' per rank, or world.sync_bn' : ''}`)
    } else if (cfg.teacher.bn_mode === 'train' && !(w.teacher_sync_bn ?? w.sync_bn) && !readsOnlyLabeled(cfg.loss)) {
      add('teacher.bn_mode', 'train', `needs at least 2 unlabeled images per rank (sampling.batch_size / world.size is 1): world.teacher_sync_bn is false, so the teacher's BatchNorm is not synchronised; set it, use teacher.bn_mode 'eval' (with ema.buffers 'ema' or 'copy') or a larger batch`)
    }
  }
  const e = cfg.sampling.epoch
  if (e.kind === 'fixed' && e.steps * cfg.sampling.epochs > 1e9) {
    add('sampling.epochs', cfg.sampling.epochs, `× ${e.steps} steps per epoch must stay within 1e9 steps`)
  }
  const range = scheduleRange(cfg)
  for (const t of scheduleTimes(cfg.policy.weak_threshold, range)) {
    const v = evaluate(cfg.policy.weak_threshold, t)
    if (!(v >= 0 && v <= 1)) {
      add('policy.weak_threshold', cfg.policy.weak_threshold, `must stay within [0, 1] over the run; gives ${v} at epoch ${t}`)
      break
    }
  }
  return issues
}
