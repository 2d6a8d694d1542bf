// Configuration: presets, files, --set overrides, and errors that name path, value and expectation.
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { applySet, ConfigError, loadConfig } from '../../ts/config/load.ts'
import { PRESETS, presetNames } from '../../ts/config/presets.ts'
import { evaluate } from '../../ts/loss/schedule.ts'
import { learningRates, lossWeights, stepsPerEpoch } from '../../ts/experiment/schedules.ts'

describe('presets', () => {
  it('every preset is a valid configuration', () => {
    expect(presetNames()).toEqual(expect.arrayContaining(['voc-662-prcl', 'cityscapes-150-prcl', 'synthetic-demo',
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

  it('the paper\'s schedules: λc ramp-down and poly LR per epoch (spec §8.3)', () => {
    const c = loadConfig('voc-662-prcl')
    const at = (epoch: number) => ({ step: 0, epoch, stepsPerEpoch: 100, totalSteps: 20000 })
    expect(lossWeights(c, at(50)).prcl).toBeCloseTo(0.7316, 4)
    expect(lossWeights(c, at(150)).prcl).toBeCloseTo(0.0601, 4)
    expect(learningRates(c, at(100)).lr).toBeCloseTo(1.715e-3, 6)
    expect(learningRates(c, at(199)).head_lr).toBe(1e-6)
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

describe('overrides and files', () => {
  it('--set parses numbers, booleans and arrays and refuses unknown paths', () => {
    const c = loadConfig('voc-662-prcl', ['data.root=/data/voc', 'sampling.batch_size=4', 'amp=bf16', 'data.labeled.crop=[257,257]', 'deterministic=true'])
    expect(c.data.root).toBe('/data/voc')
    expect(c.sampling.batch_size).toBe(4)
    expect(c.data.labeled.crop).toEqual([257, 257])
    expect(() => applySet(PRESETS['voc-662-prcl']!(), 'optim.lrr=1')).toThrow(/no setting 'lrr' here; known: lr, head_lr/)
    expect(() => applySet(PRESETS['voc-662-prcl']!(), 'nothing')).toThrow(/path=value/)
  })

  it('validation errors name the path, the value and what was expected', () => {
    const err = (() => { try { loadConfig('voc-662-prcl', ['sampling.batch_size=-3']) } catch (e) { return e as Error } })()
    expect(err).toBeInstanceOf(ConfigError)
    expect(err!.message).toMatch(/sampling\.batch_size = -3: must be >= 1/)
    expect(() => loadConfig('voc-662-prcl', ['amp=fp8'])).toThrow(/amp = "fp8"/)
    expect(() => loadConfig('no-such-thing')).toThrow(/neither a preset .*voc-662-prcl/)
  })

  it('reads JSON and YAML files that extend a preset', () => {
    const dir = mkdtempSync(join(tmpdir(), 'prcl-cfg-'))
    writeFileSync(join(dir, 'a.yaml'), 'extends: voc-662-prcl\nname: my-run\nsampling:\n  batch_size: 8\n')
    const c = loadConfig(join(dir, 'a.yaml'))
    expect(c.name).toBe('my-run')
    expect(c.sampling.batch_size).toBe(8)
    expect(c.sampling.epochs).toBe(200)
    writeFileSync(join(dir, 'b.json'), '{"extends": "voc-662-prcl", "seed": "x"}')
    expect(() => loadConfig(join(dir, 'b.json'))).toThrow(/seed = "x"/)
    writeFileSync(join(dir, 'c.yaml'), 'name: [unclosed\n')
    expect(() => loadConfig(join(dir, 'c.yaml'))).toThrow(/c\.yaml: not valid yaml/)
  })
})
