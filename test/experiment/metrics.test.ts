// The mean IoU as this project reports it (over the classes present) and as released (over every
// class, NaN when one is absent), and which evaluation is the best when one has no number.
import { describe, expect, it } from 'vitest'
import { iouFromConfusion } from '../../ts/experiment/metrics.ts'
import { bestEval } from '../../ts/experiment/metrics-log.ts'

// 3 classes, rows = ground truth: class 0 half right, class 1 all right, class 2 never seen.
const CM = [2, 2, 0, 0, 4, 0, 0, 0, 0]

describe('mIoU', () => {
  it('present: the mean over the classes in the prediction or the ground truth, the others excluded', () => {
    const r = iouFromConfusion(CM, 3)
    expect(r.iou).toEqual([0.5, 4 / 6, null])
    expect(r.excluded).toEqual([2])
    expect(r.miou).toBeCloseTo((0.5 + 4 / 6) / 2, 12)
    expect(r.pixel_accuracy).toBeCloseTo(6 / 8, 12)
  })
  it('mean (as released): NaN when a class is absent, else the plain mean of every class', () => {
    expect(iouFromConfusion(CM, 3, 'mean').miou).toBeNaN()
    const all = [2, 2, 0, 0, 4, 0, 0, 1, 3]
    expect(iouFromConfusion(all, 3, 'mean').miou).toBeCloseTo(iouFromConfusion(all, 3).miou, 12)
    expect(iouFromConfusion(all, 3, 'mean').miou).toBeCloseTo((0.5 + 4 / 7 + 3 / 4) / 3, 12)
  })
  it('an evaluation without a number (NaN, or null once written as JSON) is never the best', () => {
    const evals = [{ miou: NaN, step: 1 }, { miou: 0.4, step: 2 }, { miou: null, step: 3 }, { miou: 0.3, step: 4 }]
    expect(bestEval(evals)?.step).toBe(2)
    expect(bestEval([{ miou: NaN }, { miou: null }])).toBeNull()
  })
})
