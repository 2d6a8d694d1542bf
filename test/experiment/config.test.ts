// Configuration: presets, files, --set overrides, and one check whose errors name the path, the
// value and what is allowed, on every route.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { checkConfig } from '../../ts/config/check.ts'
import { ConfigError } from '../../ts/config/errors.ts'
import { applySet, loadConfig } from '../../ts/config/load.ts'
import { preset, presetNames } from '../../ts/config/presets.ts'
import type { ExperimentConfig } from '../../ts/config/schema.ts'
import { Experiment } from '../../ts/experiment/run.ts'
import { evaluate } from '../../ts/loss/schedule.ts'
import { stepsPerEpoch } from '../../ts/policy/progress.ts'
import { learningRates, lossWeights } from '../../ts/policy/scalars.ts'
import { writeKeys } from '../../ts/wire/curve.ts'

const dir = mkdtempSync(join(tmpdir(), 'prcl-cfg-'))
let n = 0
function file(ext: string, text: string): string {
  const p = join(dir, `c${n++}.${ext}`)
  writeFileSync(p, text)
  return p
}

/** The ConfigError a call throws (fails the test when it throws nothing or something else). */
function configError(f: () => unknown): ConfigError {
  try {
    f()
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError)
    return e as ConfigError
  }
  throw new Error('expected a ConfigError')
}

function demo(change: (c: ExperimentConfig) => void): () => ExperimentConfig {
  return () => {
    const c = preset('synthetic-demo')!
    change(c)
    return checkConfig(c)
  }
}

describe('presets', () => {
  it('every preset is a valid configuration', () => {
    expect(presetNames()).toEqual(expect.arrayContaining(['voc-662-prcl', 'cityscapes-150-prcl', 'synthetic-demo', 'synthetic-demo-supervised',
      'voc-92-prcl', 'voc-1464-prcl', 'voc-blended-1_16-prcl', 'voc-blended-1_2-prcl', 'cityscapes-1_16-prcl', 'cityscapes-1_2-prcl']))
    for (const name of presetNames()) expect(() => loadConfig(name), name).not.toThrow()
  })

  it('voc-662-prcl holds the released settings (spec §13)', () => {
    const c = loadConfig('voc-662-prcl')
    expect(c.model).toMatchObject({ num_classes: 21, backbone: 'resnet101', output_stride: 16, rep_dim: 256 })
    expect(c.optim).toMatchObject({ lr: 3.2e-3, head_lr: 5e-5, momentum: 0.9, nesterov: true, weight_decay: 5e-4 })
    expect(c.data.splits.labeled).toBe('VOC_split/662/3407/labeled_filename.txt')
    const prcl = c.loss.terms.find((t) => t.name === 'prcl')!
    expect(prcl.params).toMatchObject({ strong_threshold: 0.8, temp: 100, num_queries: 256, num_negatives: 512 })
    expect(c.eval.protocol).toBe('whole')
    expect(loadConfig('cityscapes-150-prcl').eval).toMatchObject({ protocol: 'sliding', window: [512, 512], stride: [341, 341] })
  })

  it('the -released presets: the released quirks and scale, and nothing else changed', () => {
    for (const [name, batch, steps] of [['voc-662-prcl', 16, 84], ['cityscapes-150-prcl', 48, 40]] as const) {
      const fixed = loadConfig(name)
      const rel = loadConfig(`${name}-released`)
      expect(rel.world).toMatchObject({ size: 8, sync_bn: true, teacher_sync_bn: true, prototypes: 'global', broadcast_buffers: true })
      expect(rel.sampling.batch_size).toBe(batch)
      expect(stepsPerEpoch(rel, name.startsWith('voc') ? 662 : 150)).toBe(steps)
      expect(rel.policy).toMatchObject({ conf_quantization: 'uint8_trunc', mix_partner: 'prcl_rank0', classmix_ignore_is_class: true })
      expect(rel.eval).toMatchObject({ protocol: 'prcl_random_crop', window: null, miou_reduce: 'mean', ranks: 'each' })
      expect(rel.loss.terms.find((t) => t.op === 'unsup_ce')!.params).toMatchObject({ variant: 'released' })
      expect(fixed.loss.terms.find((t) => t.op === 'unsup_ce')!.params).toMatchObject({ variant: 'fixed' })
      expect([fixed.deterministic, rel.deterministic]).toEqual([false, 'cudnn']) // cudnn.deterministic, as released
      // everything else as in the fixed preset
      const strip = (c: typeof fixed) => ({ ...c, name: '', world: null, sampling: null, policy: null, eval: null, loss: null, deterministic: null })
      expect(strip(rel)).toEqual(strip(fixed))
    }
  })

  it('the paper\'s schedules: λc ramp-down and poly LR per epoch (spec §8.3)', () => {
    const c = loadConfig('voc-662-prcl')
    expect(lossWeights(c.loss, 50).prcl).toBeCloseTo(0.7316, 4)
    expect(lossWeights(c.loss, 150).prcl).toBeCloseTo(0.0601, 4)
    expect(learningRates(c, 100).lr).toBeCloseTo(1.715e-3, 6)
    expect(learningRates(c, 199).head_lr).toBe(1e-6)
    expect(evaluate({ kind: 'cosine', from: 0, to: 1, end: 10 }, 5)).toBeCloseTo(0.5, 10)
    expect(evaluate({ kind: 'piecewise', points: [{ at: 0, value: 1 }, { at: 10, value: 3 }] }, 5)).toBe(2)
  })

  it('the epoch: about 2,000 labeled images in whole passes, never zero steps (Q-data-1)', () => {
    const c = loadConfig('voc-662-prcl')
    expect(stepsPerEpoch(c, 662)).toBe(993) // 331 batches × 3 passes, as released on one GPU
    expect(stepsPerEpoch(c, 5291)).toBe(2646) // released: 0
    c.sampling.epoch = { kind: 'fixed', steps: 7 }
    expect(stepsPerEpoch(c, 662)).toBe(7)
  })
})

describe('one check, one kind of error, every route', () => {
  it('--set parses JSON values and names list items by index or name', () => {
    const c = loadConfig('voc-662-prcl', ['data.root=/data/voc', 'sampling.batch_size=4', 'amp=bf16', 'data.labeled.crop=[257,257]',
      'deterministic=true', 'loss.terms.unsup.params.threshold={"kind":"linear","from":0.9,"to":0.97,"end":100}', 'loss.terms.2.enabled=false'])
    expect(c.data.root).toBe('/data/voc')
    expect(c.sampling.batch_size).toBe(4)
    expect(c.data.labeled.crop).toEqual([257, 257])
    expect(c.loss.terms[1]!.params!.threshold).toEqual({ kind: 'linear', from: 0.9, to: 0.97, end: 100 })
    expect(c.loss.terms[2]!.enabled).toBe(false)
  })

  it('a typo is named the same way on the command line and in a file', () => {
    expect(configError(() => applySet(preset('voc-662-prcl'), 'model.widht=0.5')).message)
      .toMatch(/model\.widht: no setting 'widht' here; known: num_classes, backbone/)
    const yaml = file('yaml', 'extends: voc-662-prcl\nmodel:\n  widht: 0.5\n')
    expect(configError(() => loadConfig(yaml)).message).toMatch(/model\.widht = 0\.5: no setting 'widht' here; known: num_classes, backbone/)
    expect(configError(() => applySet(preset('voc-662-prcl'), 'nothing')).message).toMatch(/path=value/)
    expect(configError(() => applySet(preset('voc-662-prcl'), 'loss.terms.nope.weight=1')).message).toMatch(/no item 'nope' in this list; it has sup, unsup, prcl/)
  })

  it('errors give the path, the value and what is allowed', () => {
    expect(configError(() => loadConfig('voc-662-prcl', ['sampling.batch_size=-3'])).message).toMatch(/sampling\.batch_size = -3: must be an integer ≥ 1 and ≤ 1024/)
    expect(configError(() => loadConfig('voc-662-prcl', ['amp=fp8'])).message).toMatch(/amp = "fp8": must be one of 'none', 'bf16', 'fp16'/)
    expect(configError(() => loadConfig('voc-662-prcl', ['sampling.epoch={"kind":"weekly"}'])).message).toMatch(/sampling\.epoch\.kind = "weekly": must be one of 'prcl_2000', 'fixed'/)
    expect(configError(() => loadConfig('no-such-thing')).message).toMatch(/neither a preset .*voc-662-prcl/)
    expect(configError(() => loadConfig(file('json', '{"extends": "voc-662-prcl", "seed": "x"}'))).message).toMatch(/seed = "x": must be an integer/)
    expect(configError(() => loadConfig(file('yaml', 'name: [unclosed\n'))).message).toMatch(/not valid YAML/)
  })

  it('extends replaces a union-typed setting instead of merging into it', () => {
    const c = loadConfig(file('yaml', 'extends: voc-662-prcl\nname: my-run\nsampling:\n  batch_size: 8\n  epoch: {kind: fixed, steps: 5}\n'))
    expect(c.name).toBe('my-run')
    expect(c.sampling).toEqual({ batch_size: 8, epochs: 200, epoch: { kind: 'fixed', steps: 5 } })
  })

  it('cross-field rules are part of the check', () => {
    expect(configError(demo((c) => { c.eval = { ...c.eval, protocol: 'sliding', window: null, stride: null } })).message).toMatch(/eval\.window = null: must be \[height, width\] when eval\.protocol is 'sliding'/)
    expect(configError(demo((c) => { c.eval = { ...c.eval, protocol: 'sliding', window: [48, 48], stride: [64, 64] } })).message).toMatch(/eval\.stride .*must not exceed eval\.window/)
    expect(configError(demo((c) => { c.model.backbone = 'resnet101' })).message).toMatch(/model\.width = 0\.25: must be 1 for resnet101/)
    expect(configError(demo((c) => { c.teacher.bn_mode = 'eval' })).message).toMatch(/teacher\.bn_mode = "eval": needs ema\.buffers 'copy' or 'ema'/)
    expect(configError(() => loadConfig('synthetic-demo-supervised', ['ema.buffers=own'])).message).toMatch(/ema\.buffers = "own": must be 'ema' or 'copy' for a loss that reads only labeled images/)
    expect(configError(demo((c) => { c.data.labeled.scale = [1.5, 0.5] })).message).toMatch(/data\.labeled\.scale = \[1\.5,0\.5\]: must be \[low, high\]/)
  })

  it('the loss spec is checked against the op registry', () => {
    const spec = (change: (t: ExperimentConfig['loss']['terms']) => void) => configError(demo((c) => change(c.loss.terms))).message
    expect(spec((t) => { t[0]!.op = 'focal' })).toMatch(/loss\.terms\.0\.op = "focal": must be one of 'cross_entropy', 'unsup_ce', 'prcl'/)
    expect(spec((t) => { t[0]!.inputs.logits = 'model.nothing' })).toMatch(/loss\.terms\.0\.inputs\.logits = "model\.nothing": names nothing; model\.\* has 'logits_l'/)
    expect(spec((t) => { t[0]!.inputs.extra = 'batch.y_l' })).toMatch(/op 'cross_entropy' takes no input 'extra'/)
    expect(spec((t) => { delete t[0]!.inputs.target })).toMatch(/loss\.terms\.0\.inputs\.target: is missing/)
    expect(spec((t) => { t[1]!.name = 'sup' })).toMatch(/loss\.terms\.1\.name = "sup": must be unique/)
    expect(spec((t) => { t[2]!.params!.num_queries = 0 })).toMatch(/loss\.terms\.2\.params\.num_queries = 0: must be an integer ≥ 1/)
    expect(spec((t) => { delete t[2]!.params!.temp })).toMatch(/loss\.terms\.2\.params\.temp: is missing/)
    expect(spec((t) => { for (const x of t) x.enabled = false })).toMatch(/every term is disabled/)
    const sum = (a: string, b: string, name: string) => ({ name, op: 'sum', inputs: { a, b }, weight: 0 })
    expect(spec((t) => { t.push(sum('term.s1', 'term.sup', 's1')) })).toMatch(/a term cannot read itself/)
    expect(spec((t) => { t.push(sum('term.s2', 'term.sup', 's1'), sum('term.s1', 'term.sup', 's2')) })).toMatch(/terms form a cycle: s1 -> s2 -> s1|terms form a cycle: s2 -> s1 -> s2/)
  })

  it('every schedule is checked over the run: finite, weights ≥ 0, probabilities in [0, 1]', () => {
    expect(configError(() => loadConfig('synthetic-demo', ['loss.terms.prcl.weight={"kind":"linear","from":1,"to":-1,"end":8}'])).message)
      .toMatch(/loss\.terms\.2\.weight = .*must give a finite weight ≥ 0 over the run; gives -0\.25 at epoch 5/)
    expect(configError(() => loadConfig('synthetic-demo', ['loss.terms.prcl.weight={"kind":"poly","base":1,"end":0,"power":1,"floor":0}'])).message)
      .toMatch(/must give a finite weight ≥ 0 over the run; gives NaN at epoch 0/)
    expect(configError(() => loadConfig('synthetic-demo', ['loss.terms.unsup.params.threshold=1.5'])).message).toMatch(/threshold = 1\.5: must be a number ≥ 0 and ≤ 1/)
    expect(configError(() => loadConfig('synthetic-demo', ['policy.weak_threshold=-1'])).message).toMatch(/policy\.weak_threshold = -1: must stay within \[0, 1\]/)
    expect(configError(() => loadConfig('synthetic-demo', ['loss.terms.unsup.params.threshold={"kind":"linear","from":0.5,"to":1.2,"end":8}'])).message)
      .toMatch(/threshold = .*≤ 1 over the run; gives 1\.025 at epoch 6/)
    expect(configError(() => loadConfig(file('yaml', 'extends: synthetic-demo\noptim: {lr: .inf}\n'))).message).toMatch(/optim\.lr = Infinity: must be a finite number/)
  })

  it('every number has an upper bound', () => {
    expect(configError(() => loadConfig('synthetic-demo', ['optim.lr=100'])).message).toMatch(/optim\.lr = 100: must be a number > 0 and ≤ 10/)
    expect(configError(() => loadConfig('synthetic-demo', ['sampling.epoch.steps=1e308'])).message).toMatch(/sampling\.epoch\.steps = 1e\+308: must be an integer ≥ 1 and ≤ 10000000/)
    expect(configError(() => loadConfig('synthetic-demo', ['model.width=0.001'])).message).toMatch(/model\.width = 0\.001: must be a number ≥ 0\.0625/)
    expect(configError(() => loadConfig('synthetic-demo', ['optim.weight_decay=5'])).message).toMatch(/optim\.weight_decay = 5/)
  })

  it('input is bounded and prototype keys are refused on every route', () => {
    const deep = file('json', '{"extends":"synthetic-demo","data":' + '['.repeat(10_000) + ']'.repeat(10_000) + '}')
    expect(configError(() => loadConfig(deep)).message).toMatch(/nested too deeply/)
    expect(configError(() => loadConfig(file('yaml', 'extends: __proto__\n'))).message).toMatch(/extends = "__proto__": must name a preset/)
    expect(configError(() => loadConfig(file('json', '{"extends":"synthetic-demo","__proto__":{"x":1}}'))).message).toMatch(/'__proto__' is not allowed as a key/)
    expect(configError(() => loadConfig('synthetic-demo', ['__proto__.toString=1'])).message).toMatch(/'__proto__' is not a setting name/)
    expect(configError(() => loadConfig('synthetic-demo', ['model.constructor=1'])).message).toMatch(/'constructor' is not a setting name/)
    expect(configError(() => loadConfig('synthetic-demo', ['data.root={"__proto__":{"polluted":1}}'])).message).toMatch(/'__proto__' is not allowed as a key/)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(configError(() => loadConfig(dir)).message).toMatch(/is a directory, not a configuration file/)
  })
})

describe('world (several workers)', () => {
  it('the global batch must divide evenly over the ranks', () => {
    expect(loadConfig('synthetic-demo', ['world.size=4', 'sampling.batch_size=8']).world.size).toBe(4)
    expect(loadConfig('synthetic-demo', ['world.size=8', 'sampling.batch_size=16']).sampling.batch_size).toBe(16)
    expect(configError(() => loadConfig('synthetic-demo', ['world.size=3'])).message)
      .toMatch(/sampling\.batch_size = 8: must be a multiple of world\.size 3: it is the global batch, and each rank takes batch_size \/ world\.size images/)
    expect(configError(() => loadConfig('synthetic-demo', ['world.size=16'])).message).toMatch(/sampling\.batch_size = 8: must be a multiple of world\.size 16/)
  })

  it('world.devices lists one device per rank, each CUDA device once', () => {
    expect(loadConfig('synthetic-demo', ['world.size=2', 'world.devices=["cpu","cpu"]']).world.devices).toEqual(['cpu', 'cpu'])
    expect(loadConfig('voc-662-prcl', ['world.size=2', 'sampling.batch_size=4', 'world.devices=["cuda:0","cuda:1"]']).world.devices).toEqual(['cuda:0', 'cuda:1'])
    expect(configError(() => loadConfig('synthetic-demo', ['world.size=2', 'world.devices=["cpu"]'])).message)
      .toMatch(/world\.devices = \["cpu"\]: must list exactly world\.size \(2\) devices, one per rank/)
    expect(configError(() => loadConfig('synthetic-demo', ['world.devices=["cpu","cpu"]'])).message)
      .toMatch(/world\.devices = \["cpu","cpu"\]: must list exactly world\.size \(1\) devices/)
    expect(configError(() => loadConfig('voc-662-prcl', ['world.size=2', 'sampling.batch_size=4', 'world.devices=["cuda:1","cuda:1"]'])).message)
      .toMatch(/world\.devices = .*must name each CUDA device once \(cuda:1 is listed twice\)/)
    expect(configError(() => loadConfig('synthetic-demo', ['world.size=2', 'world.devices=["gpu0","cpu"]'])).message).toMatch(/world\.devices\.0 = "gpu0"/)
    expect(configError(() => loadConfig('synthetic-demo', ['world.size=0'])).message).toMatch(/world\.size = 0: must be an integer ≥ 1/)
  })

  it('the presets run in one process (the -released ones on 8), with SyncBN (the teacher as the student) and global prototypes when they run in several', () => {
    for (const name of presetNames().filter((n) => !n.endsWith('-released'))) {
      expect(preset(name)!.world).toEqual({ size: 1, devices: null, listen: null, keys: null, insecure: false, wait_s: 600, sync_bn: true, teacher_sync_bn: null, broadcast_buffers: false, prototypes: 'global' })
    }
  })

  it('remote ranks: a tcp endpoint, keys off this machine unless explicitly insecure, no devices', () => {
    const keys = mkdtempSync(join(tmpdir(), 'prcl-keys-'))
    expect(loadConfig('synthetic-demo', ['world.size=2', 'world.listen=tcp://127.0.0.1:5555']).world.listen).toBe('tcp://127.0.0.1:5555')
    expect(loadConfig('synthetic-demo', ['world.size=2', 'world.listen=tcp://0.0.0.0:5555', `world.keys=${keys}`]).world.keys).toBe(keys)
    expect(loadConfig('synthetic-demo', ['world.size=2', 'world.listen=tcp://[::]:5555', 'world.insecure=true']).world.insecure).toBe(true)
    expect(configError(() => loadConfig('synthetic-demo', ['world.size=2', 'world.listen=tcp://0.0.0.0:5555'])).message)
      .toMatch(/world\.listen = "tcp:\/\/0\.0\.0\.0:5555": is reachable from other machines and has no CURVE keys: .*Set world\.keys to a directory from `prcl keys --out DIR`, or world\.insecure true/)
    expect(configError(() => loadConfig('synthetic-demo', ['world.size=2', 'world.listen=tcp://node7:5555'])).message).toMatch(/no CURVE keys/)
    expect(configError(() => loadConfig('synthetic-demo', ['world.listen=ipc:///tmp/x'])).message).toMatch(/world\.listen = "ipc:\/\/\/tmp\/x"/)
    expect(configError(() => loadConfig('synthetic-demo', ['world.listen=tcp://10.0.0.1'])).message).toMatch(/world\.listen = "tcp:\/\/10\.0\.0\.1"/)
    expect(configError(() => loadConfig('synthetic-demo', [`world.keys=${keys}`])).message).toMatch(/world\.keys = .*is set but world\.listen is null/)
    expect(configError(() => loadConfig('synthetic-demo', ['world.size=2', 'world.listen=tcp://127.0.0.1:5555', 'world.devices=["cpu","cpu"]'])).message)
      .toMatch(/world\.devices = .*must be null with world\.listen: ranks started by torchrun take the device of their LOCAL_RANK/)
    expect(configError(() => loadConfig('synthetic-demo', ['world.wait_s=0'])).message).toMatch(/world\.wait_s = 0/)
    // The key directory itself is read when the run is made, before anything starts.
    const cfg = loadConfig('synthetic-demo', ['world.size=2', 'world.listen=tcp://127.0.0.1:5555', `world.keys=${keys}`])
    expect(() => new Experiment(cfg, { runDir: join(keys, 'run') })).toThrow(/driver\.key_secret: .*no such file|cannot read the CURVE certificate .*driver\.key_secret/i)
    writeKeys(keys)
    expect(() => new Experiment(cfg, { runDir: join(keys, 'run') })).not.toThrow()
    chmodSync(join(keys, 'driver.key_secret'), 0o644)
    expect(() => new Experiment(cfg, { runDir: join(keys, 'run') })).toThrow(/driver\.key_secret can be read by other users; chmod 600 it/)
    rmSync(keys, { recursive: true, force: true })
  })
})

describe('world: one image per rank', () => {
  it('BatchNorm in train mode needs two images: synchronised over ranks, or per rank', () => {
    expect(configError(() => loadConfig('synthetic-demo', ['sampling.batch_size=1'])).message)
      .toMatch(/sampling\.batch_size = 1: gives each step one image, too few for BatchNorm in train mode/)
    expect(configError(() => loadConfig('synthetic-demo', ['sampling.batch_size=2', 'world.size=2', 'world.sync_bn=false'])).message)
      .toMatch(/sampling\.batch_size = 2: gives each rank one image, .*use at least 2 per rank, or world\.sync_bn/)
    // The teacher synchronised as the student is (the default) normalises over both ranks' images.
    expect(loadConfig('synthetic-demo', ['sampling.batch_size=2', 'world.size=2']).world.size).toBe(2)
    expect(configError(() => loadConfig('synthetic-demo', ['sampling.batch_size=2', 'world.size=2', 'world.teacher_sync_bn=false'])).message)
      .toMatch(/teacher\.bn_mode = "train": needs at least 2 unlabeled images per rank .*world\.teacher_sync_bn is false.*use teacher\.bn_mode 'eval'/)
    expect(loadConfig('synthetic-demo', ['sampling.batch_size=2', 'world.size=2', 'teacher.bn_mode=eval', 'ema.buffers=ema']).world.size).toBe(2)
    expect(loadConfig('synthetic-demo-supervised', ['sampling.batch_size=2', 'world.size=2']).world.size).toBe(2)
  })
})
