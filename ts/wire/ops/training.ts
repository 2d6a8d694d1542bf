// Ops of the training worker: configure, train_step, eval_step, predict, save, load, reset.
import Type from 'typebox'
import { LossSpec, ResolvedParams } from '../../loss/spec.ts'
import { op } from './spec.ts'

const Closed = { additionalProperties: false } as const
const Prob = Type.Number({ minimum: 0, maximum: 1 })
const PosNum = Type.Number({ minimum: 0 })
// Every size that reaches an allocation is bounded (the configuration's limits, ts/config/schema.ts).
const MAX_SIDE = 16384
const Side = Type.Integer({ minimum: 1, maximum: MAX_SIDE })
const Offset = Type.Integer({ minimum: 0, maximum: 16 * MAX_SIDE })
const Path = Type.String({ minLength: 1, maxLength: 4096 })
const Count = Type.Integer({ minimum: 0, maximum: 2 ** 53 - 1 })

/** The network's shape: the configuration's model settings, less where its weights come from. */
export const ModelFields = {
  num_classes: Type.Integer({ minimum: 2, maximum: 1000 }),
  backbone: Type.Enum(['resnet18', 'resnet50', 'resnet101']),
  output_stride: Type.Union([Type.Literal(8), Type.Literal(16)]),
  rep_dim: Type.Integer({ minimum: 2, maximum: 4096 }),
  // Channel-width factor of a reduced backbone (resnet18 only; 1 = torchvision's widths).
  width: Type.Number({ minimum: 0.0625, maximum: 1 }),
}

// Backbone weights to start from, found and hashed by the driver (ts/weights/resolve.ts); the
// worker reads the file once and checks those bytes against sha256, so a file swapped after the
// driver vetted it is refused. `trusted`: a pickle-based file may be read on a torch < 2.6, whose
// weights-only loader is not safe (its sha256 is pinned by prcl's catalog, or the user said so).
export const PretrainedFile = Type.Object({
  path: Path,
  sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  trusted: Type.Boolean(),
}, Closed)

export const ModelConfig = Type.Object({
  ...ModelFields,
  // null: random initialisation.
  pretrained: Type.Union([PretrainedFile, Type.Null()]),
}, Closed)

export const Distributed = Type.Object({
  // The student's BatchNorm layers as SyncBatchNorm: statistics over every rank's images.
  sync_bn: Type.Boolean(),
  // The teacher's too (as released, where the whole network was converted): its train-mode
  // pseudo-labelling forward normalises over every rank's unlabeled images and its running
  // statistics are global [default false].
  teacher_sync_bn: Type.Optional(Type.Boolean()),
  // DDP's broadcast_buffers: rank 0's BatchNorm buffers copied to the others before each forward.
  broadcast_buffers: Type.Boolean(),
  // PRCL prototypes from every rank's pixels (as released, §7.10) or from this rank's alone.
  prototypes: Type.Enum(['global', 'local']),
}, Closed)

// true: deterministic algorithms wherever torch has them (a warning where it has none) and cuDNN's
// deterministic convolutions; 'cudnn': only the latter, as the released script sets
// (cudnn.deterministic = True); false: cuDNN picks the fastest kernels (benchmark mode).
export const Determinism = Type.Union([Type.Boolean(), Type.Literal('cudnn')])

export const ConfigureArgs = Type.Object({
  seed: Type.Integer({ minimum: 0, maximum: 2 ** 53 - 1 }),
  deterministic: Determinism,
  threads: Type.Union([Type.Integer({ minimum: 1, maximum: 1024 }), Type.Null()]),
  model: ModelConfig,
  optim: Type.Object({
    momentum: Prob,
    nesterov: Type.Boolean(),
    weight_decay: PosNum,
    decay_norm_and_bias: Type.Boolean(),
    grad_clip: Type.Union([Type.Number({ exclusiveMinimum: 0 }), Type.Null()]),
  }, Closed),
  amp: Type.Enum(['none', 'bf16', 'fp16']),
  channels_last: Type.Boolean(),
  loss: LossSpec,
  // Data parallelism, used when the worker is one rank of a torch.distributed group (hello.dist).
  distributed: Distributed,
  // The only directories the worker may touch files in: save writes under `write`, load and the
  // pretrained weights read under `write` or `read` (resolved, symlinks followed). Without it the
  // driver names none and the worker does not confine paths (older drivers).
  paths: Type.Optional(Type.Object({
    write: Type.Array(Path, { maxItems: 16 }),
    read: Type.Array(Path, { maxItems: 16 }),
  }, Closed)),
  // data.reader rank: the directory train_step's `files` are relative to (a worker started with
  // --data-root reads its own instead).
  data_root: Type.Optional(Type.Union([Path, Type.Null()])),
}, Closed)

// A path relative to the data root (the worker refuses one that leads outside it).
const RelPath = Path
const FileList = Type.Array(RelPath, { maxItems: 1024 })

/** Test-time scales (1 = the image as it is). */
export const EvalScales = Type.Array(Type.Number({ minimum: 0.25, maximum: 4 }), { minItems: 1, maxItems: 8 })

const Box = Type.Array(Type.Integer({ minimum: 0, maximum: 16 * MAX_SIDE }), { minItems: 4, maxItems: 4 })
const Rescale = Type.Object({
  scale: Type.Number({ exclusiveMinimum: 0, maximum: 16 }),
  top: Offset, left: Offset,
  crop_h: Side, crop_w: Side,
}, Closed)
const Jitter = Type.Object({
  brightness: Type.Number({ exclusiveMinimum: 0, maximum: 16 }), contrast: Type.Number({ exclusiveMinimum: 0, maximum: 16 }),
  saturation: Type.Number({ exclusiveMinimum: 0, maximum: 16 }), hue: Type.Number({ minimum: -0.5, maximum: 0.5 }),
  order: Type.Array(Type.Integer({ minimum: 0, maximum: 3 }), { minItems: 4, maxItems: 4 }),
}, Closed)
/** Augmentation of one image, every random choice drawn by the driver. */
export const ImageAug = Type.Object({
  rescale: Type.Optional(Rescale),
  flip: Type.Optional(Type.Boolean()),
  jitter: Type.Optional(Type.Union([Jitter, Type.Null()])),
  blur: Type.Optional(Type.Union([Type.Object({ sigma: Type.Number({ minimum: 0, maximum: 16 }) }, Closed), Type.Null()])),
}, Closed)

export const EmaBuffers = Type.Enum(['own', 'copy', 'ema'])
export const TeacherBn = Type.Enum(['train', 'eval'])
// Whose image a mixed unlabeled image takes its patch from under data parallelism (Q-aug-6), for
// image i of rank r with local batch B (global index g = r·B + i) over N ranks: local_next
// (i+1) mod B of this rank (as single-GPU); global_next (g+1) mod N·B of all ranks' images;
// prcl_rank0 (g+1) mod B of all ranks' images, the released DDP code's (rank 0's images only).
// At world size 1 all three are the same.
export const MixPartner = Type.Enum(['local_next', 'global_next', 'prcl_rank0'])

export const Policy = Type.Object({
  // Unlabeled pixel enters the PRCL pool when the teacher's confidence is at least this.
  weak_threshold: Prob,
  // The teacher's BatchNorm while it pseudo-labels: batch statistics (as released) or running ones.
  teacher_bn: TeacherBn,
  mix: Type.Enum(['classmix', 'cutmix', 'cutout', 'none']),
  mix_partner: MixPartner,
  classmix_ignore_is_class: Type.Boolean(),
  conf_quantization: Type.Enum(['none', 'uint8_trunc']),
}, Closed)

const Losses = Type.Record(Type.String(), Type.Object({ value: Type.Number(), weight: Type.Number() }, Closed))
const Timing = Type.Record(Type.String(), Type.Number())

const PseudoQuality = Type.Object({
  pixels: Count,
  correct: Count,
  thresholds: Type.Array(Type.Number({ minimum: 0, maximum: 1 }), { maxItems: 16 }),
  // Per threshold: pixels whose confidence is at least it, and of those the correct ones.
  confident: Type.Array(Count, { maxItems: 16 }),
  confident_correct: Type.Array(Count, { maxItems: 16 }),
  // Ground truth (rows) by pseudo-label (columns), row-major.
  confusion: Type.Array(Count, { maxItems: 65536 }),
}, Closed)

export const trainingOps = {
  configure: op({
    doc: 'Build the model, teacher, optimizers and loss graph; replaces any earlier state.',
    args: ConfigureArgs,
    result: Type.Object({
      parameters: Type.Integer(), head_parameters: Type.Integer(), outputs: Type.Array(Type.String()),
      batch_tensors: Type.Array(Type.String()), device: Type.String(), threads: Type.Integer(),
    }, Closed),
    tensors: 'none',
  }),
  train_step: op({
    doc: 'One semi-supervised step. Tensors: encoded bytes img_l.<i>, lbl_l.<i>, img_u.<i> (uint8 1-d JPEG/PNG), or raw x_l [B,3,H,W] float32 normalised, y_l [B,H,W] int64 (-1 ignore), x_u [B,3,H,W].',
    args: Type.Object({
      step: Count,
      // What the driver planned around the tensors (ts/policy/plan.ts); the worker reads none of it.
      epoch: Type.Optional(Count),
      samples: Type.Optional(Type.Object({
        labeled: Type.Array(Count, { maxItems: 1024 }),
        unlabeled: Type.Array(Count, { maxItems: 1024 }),
      }, Closed)),
      evaluate: Type.Optional(Type.Boolean()),
      checkpoint: Type.Optional(Type.Boolean()),
      lr: PosNum,
      head_lr: PosNum,
      // The teacher's update after this step: θ_T ← decay·θ_T + (1 − decay)·θ_S; buffers as named.
      ema: Type.Object({ decay: Prob, buffers: EmaBuffers }, Closed),
      // Every enabled term's weight and its complete params, resolved for this step.
      weights: Type.Record(Type.String(), Type.Number({ minimum: 0 }), { maxProperties: 256 }),
      params: Type.Record(Type.String(), ResolvedParams, { maxProperties: 256 }),
      policy: Policy,
      labeled_aug: Type.Optional(Type.Array(ImageAug, { maxItems: 1024 })),
      // The raw unlabeled crop the teacher sees (the loader's crop, before pseudo-labelling).
      unlabeled_crop: Type.Optional(Type.Array(ImageAug, { maxItems: 1024 })),
      // Maps stored label values to train ids (Cityscapes labelIds); 255 = ignore.
      label_lut: Type.Optional(Type.Array(Type.Integer({ minimum: 0, maximum: 255 }), { minItems: 256, maxItems: 256 })),
      unlabeled_aug: Type.Optional(Type.Array(ImageAug, { maxItems: 1024 })),
      mix: Type.Optional(Type.Array(Type.Object({ seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 2 ** 32 - 1 })), box: Type.Optional(Box) }, Closed), { maxItems: 1024 })),
      // data.reader rank: the step's files, relative to the worker's data root, instead of their bytes.
      files: Type.Optional(Type.Object({ img_l: FileList, lbl_l: FileList, img_u: FileList, lbl_u: Type.Optional(FileList) }, Closed)),
    }, Closed),
    result: Type.Object({
      step: Type.Integer(),
      total: Type.Number(),
      losses: Losses,
      stats: Type.Object({
        mask_ratio: Type.Number(),
        classes_present: Type.Integer(),
        anchor_classes: Type.Integer(),
        // Anchor candidates (valid pixels the student is unsure of) per class.
        hard_pixels_per_class: Type.Array(Type.Integer({ minimum: 0 })),
        grad_norm: Type.Union([Type.Number(), Type.Null()]),
      }, Closed),
      time_ms: Timing,
      // The non-finite guard: true when the step was not applied (no optimiser step, no teacher
      // update, BatchNorm statistics put back) because non_finite is not empty: 'total', loss
      // terms by name, 'gradients', on any rank (every rank decides the same).
      skipped: Type.Boolean(),
      non_finite: Type.Array(Type.String()),
      // amp fp16: the grad scaler's scale after this step (halved after a step whose gradients
      // overflowed, which the scaler skips by its own rule); null otherwise.
      grad_scale: Type.Union([Type.Number(), Type.Null()]),
      // The teacher's pseudo-labels against the unlabeled images' ground truth (sent as lbl_u.<i>
      // for analysis only), counted over pixels with a class, summed over ranks; null without it.
      pseudo_quality: Type.Union([PseudoQuality, Type.Null()]),
    }, Closed),
    tensors: 'any',
  }),
  unlabeled_views: op({
    doc: "For pictures: what the unlabeled branch does to encoded images img_u.<i> under the given plan parameters — weak.<i> (the teacher's crop, uint8 [H,W,3]), pseudo.<i> (uint8, 255 = ignore), conf.<i>, mixed.<i> (the student's input, uint8 [h,w,3]), mixed_label.<i>, var.<i> (the student's σ²). Changes nothing of the run; the mixing partner is taken among these images.",
    args: Type.Object({
      policy: Policy,
      unlabeled_crop: Type.Optional(Type.Array(ImageAug, { maxItems: 64 })),
      unlabeled_aug: Type.Optional(Type.Array(ImageAug, { maxItems: 64 })),
      mix: Type.Optional(Type.Array(Type.Object({ seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 2 ** 32 - 1 })), box: Type.Optional(Box) }, Closed), { maxItems: 64 })),
    }, Closed),
    result: Type.Object({ count: Count }, Closed),
    tensors: 'any',
  }),
  eval_step: op({
    doc: 'Confusion matrix [C,C] (rows = truth) of a network on x [B,3,H,W] against y [B,H,W], or on encoded images img.<i> with labels lbl.<i> (each at its own size).',
    args: Type.Object({
      model: Type.Enum(['teacher', 'student']),
      label_lut: Type.Optional(Type.Array(Type.Integer({ minimum: 0, maximum: 255 }), { minItems: 256, maxItems: 256 })),
      // whole, sliding (window, stride), or crop: the released random crops (encoded images only).
      mode: Type.Enum(['whole', 'sliding', 'crop']),
      window: Type.Optional(Type.Array(Side, { minItems: 2, maxItems: 2 })),
      stride: Type.Optional(Type.Array(Side, { minItems: 2, maxItems: 2 })),
      crop: Type.Optional(Type.Array(Side, { minItems: 2, maxItems: 2 })),
      // One [u, v] in [0, 1) per encoded image: where its crop's top and left fall.
      crop_at: Type.Optional(Type.Array(Type.Array(Type.Number({ minimum: 0, exclusiveMaximum: 1 }), { minItems: 2, maxItems: 2 }), { maxItems: 4096 })),
      // Test-time augmentation: probabilities averaged over these scales and, with flip, mirrored.
      scales: Type.Optional(EvalScales),
      flip: Type.Optional(Type.Boolean()),
    }, Closed),
    result: Type.Object({ pixels: Type.Integer({ minimum: 0 }), time_ms: Type.Number() }, Closed),
    tensors: 'any',
  }),
  predict: op({
    doc: 'Class map, probabilities and the σ² map (mean over dimensions) for x [B,3,H,W], or per encoded image img.<i> (outputs classes.<i> uint8, probs.<i>, var.<i>, and image.<i>: the image as decoded, uint8 [H,W,3]).',
    args: Type.Object({
      model: Type.Enum(['teacher', 'student']),
      outputs: Type.Array(Type.Enum(['classes', 'probs', 'var', 'image']), { minItems: 1, maxItems: 4, uniqueItems: true }),
    }, Closed),
    result: Type.Object({ shape: Type.Array(Type.Integer()) }, Closed),
    tensors: 'any',
  }),
  save: op({
    doc: "Write the worker's whole state (model, teacher, optimizers, RNG) to a path, atomically.",
    args: Type.Object({ path: Path }, Closed),
    result: Type.Object({ path: Type.String(), bytes: Type.Integer() }, Closed),
    tensors: 'none',
  }),
  load: op({
    doc: 'Restore a state written by save; the worker must be configured with the same model.',
    args: Type.Object({ path: Path }, Closed),
    result: Type.Object({ path: Type.String(), step: Type.Union([Type.Integer(), Type.Null()]) }, Closed),
    tensors: 'none',
  }),
  reset: op({
    doc: 'Drop the configured model and optimizers.',
    args: Type.Object({}, Closed),
    result: Type.Object({ was_configured: Type.Boolean() }, Closed),
    tensors: 'none',
  }),
  state_hash: op({
    doc: "sha256 of each named network's parameters, then its buffers, in the network's order: each tensor's name, dtype, shape and bytes (on the CPU, contiguous). Ranks of one group compare them before each evaluation.",
    args: Type.Object({
      networks: Type.Array(Type.Enum(['teacher', 'student', 'head']), { minItems: 1, maxItems: 3, uniqueItems: true }),
    }, Closed),
    result: Type.Object({
      hashes: Type.Record(Type.String(), Type.String({ pattern: '^[0-9a-f]{64}$' })),
    }, Closed),
    tensors: 'none',
  }),
  data_files: op({
    doc: "The size of each file (relative to this rank's data root; -1: none), so the driver can check, before a run whose ranks read their own data, that every rank sees the data it planned from.",
    args: Type.Object({ files: Type.Array(RelPath, { maxItems: 4096 }) }, Closed),
    result: Type.Object({ root: Type.Union([Type.String(), Type.Null()]), sizes: Type.Array(Type.Integer({ minimum: -1 })) }, Closed),
    tensors: 'none',
  }),
  align_buffers: op({
    doc: "Every rank takes rank 0's BatchNorm buffers of the teacher, student and head (a collective: every rank of the group must call it). Before each evaluation, so every rank scores the same model.",
    args: Type.Object({}, Closed),
    result: Type.Object({ buffers: Type.Integer({ minimum: 0 }), bytes: Type.Integer({ minimum: 0 }) }, Closed),
    tensors: 'none',
  }),
}

/** Loss pieces on given tensors, for parity tests against py/reference and for reproducing a
 *  step's loss outside training. */
export const probeOps = {
  loss_probe: op({
    doc: "Evaluate 'mls' (mu_a, var_a, mu_b, var_b), 'prototypes' (mu, var [N,D], valid [N,C]), 'prcl' (rep, var, label, mask, prob; optional anchors/negatives draws) or 'unsup_ce' (logits, pseudo, conf) on the given tensors.",
    args: Type.Object({
      what: Type.Enum(['mls', 'prototypes', 'prcl', 'unsup_ce']),
      params: Type.Record(Type.String(), Type.Union([Type.Number(), Type.String(), Type.Boolean(), Type.Null()])),
      seed: Type.Union([Type.Integer({ minimum: 0, maximum: 2 ** 53 - 1 }), Type.Null()]),
      return_draws: Type.Boolean(),
      grad: Type.Boolean(),
    }, Closed),
    result: Type.Object({ value: Type.Union([Type.Number(), Type.Null()]) }, Closed),
    tensors: 'any',
  }),
  input_probe: op({
    doc: "A train_step's input path without the model (prcl bench data): img_l.<i>, lbl_l.<i>, img_u.<i> decoded on the decode threads, then augmented on the device as the step would. Times in ms.",
    args: Type.Object({
      num_classes: Type.Integer({ minimum: 2, maximum: 1000 }),
      labeled_aug: Type.Optional(Type.Array(ImageAug, { maxItems: 1024 })),
      unlabeled_crop: Type.Optional(Type.Array(ImageAug, { maxItems: 1024 })),
      label_lut: Type.Optional(Type.Array(Type.Integer({ minimum: 0, maximum: 255 }), { minItems: 256, maxItems: 256 })),
    }, Closed),
    result: Type.Object({
      images: Type.Integer({ minimum: 0 }), decode_ms: Type.Number(), waited_ms: Type.Number(), augment_ms: Type.Number(),
      decode_threads: Type.Integer({ minimum: 1 }),
    }, Closed),
    tensors: 'any',
  }),
}
