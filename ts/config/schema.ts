// The experiment configuration: one typebox schema, the single description of a run.
import Type, { type Static } from 'typebox'
import { LossSpec } from '../loss/spec.ts'
import { ScheduleOrNumber } from '../loss/schedule.ts'
import { Determinism, Distributed, EmaBuffers, EvalScales, MixPartner, ModelFields, TeacherBn } from '../wire/ops/training.ts'

const Closed = { additionalProperties: false } as const
const PathString = Type.String({ minLength: 1, maxLength: 4096 })
const Prob = Type.Number({ minimum: 0, maximum: 1 })
const Rate = Type.Number({ exclusiveMinimum: 0, maximum: 10 })
const Size = Type.Array(Type.Integer({ minimum: 1, maximum: 16384 }), { minItems: 2, maxItems: 2, description: '[height, width]' })
const Range = Type.Array(Type.Number({ exclusiveMinimum: 0, maximum: 16 }), { minItems: 2, maxItems: 2, description: '[low, high]' })

const Photometric = Type.Object({
  // Colour jitter with probability p, factors drawn uniformly in [1 - x, 1 + x] (hue: [-x, x]).
  jitter: Type.Object({ p: Prob, brightness: Prob, contrast: Prob, saturation: Prob, hue: Type.Number({ minimum: 0, maximum: 0.5 }) }, Closed),
  // Gaussian blur with probability p, sigma uniform in the range.
  blur: Type.Object({ p: Prob, sigma: Range }, Closed),
  flip: Prob,
}, Closed)

export const ExperimentConfig = Type.Object({
  name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$' }),
  seed: Type.Integer({ minimum: 0, maximum: 2 ** 32 - 1 }),
  data: Type.Object({
    dataset: Type.Enum(['voc', 'cityscapes', 'folder']),
    root: Type.String({ maxLength: 4096, description: 'dataset root folder' }),
    // Split files, absolute or relative to the dataset root.
    splits: Type.Object({ labeled: PathString, unlabeled: PathString, val: PathString }, Closed),
    skip_bad_samples: Type.Boolean(),
    // The data pre-flight at train start (ts/data/check.ts; `prcl check-data` runs it alone):
    // fast = file structure, label mode, sizes and values; full = every image decoded; none.
    check: Type.Enum(['fast', 'full', 'none']),
    // Who reads a training step's images: the driver, which sends their bytes [default], or each
    // rank its own shard's files from the data root as its machine sees it (a shared filesystem, or
    // the worker's --data-root); at start every rank must see the driver's files, size for size.
    reader: Type.Optional(Type.Enum(['driver', 'rank'])),
    labeled: Type.Object({ crop: Size, scale: Range, photometric: Photometric }, Closed),
    unlabeled: Type.Object({
      crop: Size,
      // The in-model re-crop of the unlabeled triple after pseudo-labelling (spec §4 step 3).
      rescale: Range,
      photometric: Photometric,
    }, Closed),
  }, Closed),
  sampling: Type.Object({
    batch_size: Type.Integer({ minimum: 1, maximum: 1024 }),
    epochs: Type.Integer({ minimum: 1, maximum: 100000 }),
    // prcl_2000: about 2,000 labeled images per epoch as released (never 0 steps);
    // fixed: a fixed number of steps per epoch.
    epoch: Type.Union([
      Type.Object({ kind: Type.Literal('prcl_2000'), images: Type.Integer({ minimum: 1, maximum: 1e8 }) }, Closed),
      Type.Object({ kind: Type.Literal('fixed'), steps: Type.Integer({ minimum: 1, maximum: 1e7 }) }, Closed),
    ]),
  }, Closed),
  model: Type.Object({
    ...ModelFields,
    // imagenet: torchvision's ImageNet weights for the backbone, found in $PRCL_WEIGHTS or torch's
    // hub cache (prcl weights fetch); a path: that state dict (safetensors or a torch file);
    // none (or null): random weights.
    pretrained: Type.Union([Type.Literal('imagenet'), Type.Literal('none'), Type.String({ minLength: 1, maxLength: 4096 }), Type.Null()]),
  }, Closed),
  // The teacher's EMA: decay min(1 − 1/(t+1), alpha) after the t-th update (spec §3); which
  // BatchNorm buffers follow the student (own: none, as released; copy; ema: averaged).
  ema: Type.Object({ alpha: Prob, buffers: EmaBuffers }, Closed),
  teacher: Type.Object({ bn_mode: TeacherBn }, Closed),
  policy: Type.Object({
    weak_threshold: ScheduleOrNumber,
    mix: Type.Enum(['classmix', 'cutmix', 'cutout', 'none']),
    // The mixing partner under data parallelism (Q-aug-6, see MixPartner); local_next as single-GPU.
    mix_partner: MixPartner,
    classmix_ignore_is_class: Type.Boolean(),
    conf_quantization: Type.Enum(['none', 'uint8_trunc']),
  }, Closed),
  loss: LossSpec,
  optim: Type.Object({
    lr: Rate,
    head_lr: Rate,
    momentum: Prob,
    nesterov: Type.Boolean(),
    weight_decay: Type.Number({ minimum: 0, maximum: 1 }),
    decay_norm_and_bias: Type.Boolean(),
    grad_clip: Type.Union([Type.Number({ exclusiveMinimum: 0, maximum: 1e6 }), Type.Null()]),
    // Poly decay as released: lr·(1 − t/T)^power, floored; t counts epochs or steps.
    poly: Type.Object({ power: Type.Number({ minimum: 0, maximum: 100 }), floor: Type.Number({ minimum: 0, maximum: 10 }) }, Closed),
  }, Closed),
  // Schedules (loss weights, policy thresholds, LR) advance per epoch, as released, or per step.
  schedule_granularity: Type.Enum(['epoch', 'step']),
  amp: Type.Enum(['none', 'bf16', 'fp16']),
  channels_last: Type.Boolean(),
  deterministic: Determinism,
  eval: Type.Object({
    every_epochs: Type.Integer({ minimum: 1, maximum: 100000 }),
    // whole: each val image at its size (VOC); sliding: windows of `window` every `stride`
    // (Cityscapes); prcl_random_crop: as released (spec §11.1, Q-eval-1), one random crop of
    // `window` (default the training crop) per image, re-drawn at every evaluation — only to
    // compare with numbers measured that way.
    protocol: Type.Enum(['whole', 'sliding', 'prcl_random_crop']),
    model: Type.Enum(['teacher', 'student']),
    window: Type.Union([Size, Type.Null()]),
    stride: Type.Union([Size, Type.Null()]),
    // Test-time augmentation: probabilities averaged over these scales [default [1]] and, with
    // flip [default false], their mirror images (e.g. [0.5, 0.75, 1, 1.25, 1.5, 1.75] and flip).
    scales: Type.Optional(EvalScales),
    flip: Type.Optional(Type.Boolean()),
    // The mean of the per-class IoUs: over the classes present in the prediction or the ground
    // truth [default present], or over every class, NaN when one has neither (mean; as released,
    // Q-eval-2: such an evaluation is never the best and saves no checkpoint).
    miou_reduce: Type.Optional(Type.Enum(['present', 'mean'])),
    // Several ranks: the val images dealt over them and one score from every confusion [default
    // deal], or each rank scoring every image on its own random crops and rank 0's score reported
    // (each; as released, with eval.protocol prcl_random_crop only).
    ranks: Type.Optional(Type.Enum(['deal', 'each'])),
  }, Closed),
  checkpoint: Type.Object({ every_steps: Type.Integer({ minimum: 1, maximum: 1e9 }) }, Closed),
  // A step whose loss or gradients are not finite is never applied (the worker checks before the
  // optimisers step); then 'skip' goes on, 'rollback' reloads the newest checkpoint's worker state
  // and goes on, 'stop' ends the run. More than max_consecutive such steps in a row end it too.
  guard: Type.Object({
    non_finite: Type.Enum(['skip', 'rollback', 'stop']),
    max_consecutive: Type.Integer({ minimum: 1, maximum: 1e6 }),
  }, Closed),
  // What a run shows besides metrics.jsonl: TensorBoard event files in the run directory, and at
  // each evaluation picture strips of the first val_images val images (TensorBoard and pictures/).
  // Without a terminal, the progress line is printed once every progress_s seconds (0: never).
  log: Type.Object({
    tensorboard: Type.Boolean(),
    val_images: Type.Integer({ minimum: 0, maximum: 32 }),
    progress_s: Type.Number({ minimum: 0, maximum: 86400 }),
    // Where every unlabeled image has ground truth on disk, send it (analysis only; no loss term
    // can read it) and log the pseudo-labels' accuracy, mIoU and coverage above thresholds.
    pseudo_quality: Type.Boolean(),
  }, Closed),
  // A worker (or rank) that dies or stalls during training: the driver starts the workers again,
  // loads the newest valid checkpoint and goes on (the result equals an uninterrupted run's);
  // more than max_restarts restarts without a newer checkpoint in between end the run. Remote
  // ranks (world.listen) are not restarted by the driver.
  recovery: Type.Object({ max_restarts: Type.Integer({ minimum: 0, maximum: 1000 }) }, Closed),
  // Data-parallel training: `size` ranks of one torch.distributed group, each on one device
  // (`devices`, one per rank; null: worker.device for every rank). sampling.batch_size is the
  // global batch, split evenly over the ranks; learning rates are used as stated at any size.
  world: Type.Object({
    size: Type.Integer({ minimum: 1, maximum: 1024 }),
    devices: Type.Union([Type.Array(Type.String({ pattern: '^(cpu|cuda(:[0-9]+)?)$' }), { minItems: 1, maxItems: 1024 }), Type.Null()]),
    // Ranks started elsewhere (`torchrun … -m prcl_worker --connect <listen>`, or srun) connect
    // to this endpoint and the driver spawns none; null: the driver spawns `size` local ranks.
    listen: Type.Union([Type.String({
      pattern: '^tcp://(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$', maxLength: 300,
      description: 'a tcp://HOST:PORT endpoint (e.g. tcp://0.0.0.0:5555), or null',
    }), Type.Null()]),
    // CURVE key directory (`prcl keys --out DIR`): driver.key_secret, and the workers' *.key admitted.
    keys: Type.Union([PathString, Type.Null()]),
    // Allow `listen` off this machine without keys (anyone reaching the port could pose as a rank).
    insecure: Type.Boolean(),
    // How long the driver waits for every remote rank's hello.
    wait_s: Type.Integer({ minimum: 1, maximum: 86400 }),
    ...Distributed.properties,
    // null (or absent): as sync_bn, as released.
    teacher_sync_bn: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
  }, Closed),
  worker: Type.Object({
    python: Type.Union([PathString, Type.Null()]),
    device: Type.String({ pattern: '^(auto|cpu|cuda(:[0-9]+)?)$' }),
    transport: Type.Enum(['ipc', 'tcp']),
    threads: Type.Union([Type.Integer({ minimum: 1, maximum: 1024 }), Type.Null()]),
    // Threads decoding a step's images on each worker's host [default (null): its CPUs, at most 8];
    // prcl bench data measures what a number feeds.
    decode_threads: Type.Optional(Type.Union([Type.Integer({ minimum: 1, maximum: 256 }), Type.Null()])),
  }, Closed),
  runs_dir: PathString,
}, { ...Closed, $id: 'prcl/experiment' })

export type ExperimentConfig = Static<typeof ExperimentConfig>
