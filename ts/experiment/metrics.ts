// Segmentation metrics from a confusion matrix (rows = ground truth, columns = prediction).

export interface IoUResult {
  miou: number
  iou: Array<number | null>
  /** Classes absent from both prediction and ground truth: excluded from the mean. */
  excluded: number[]
  pixel_accuracy: number
}

/** IoU per class and their mean: over the classes present (`present`), or over every class, NaN
 *  when one is absent from both prediction and ground truth (`mean`, the released arithmetic). */
export function iouFromConfusion(cm: ArrayLike<number | bigint>, numClasses: number, reduce: 'present' | 'mean' = 'present'): IoUResult {
  const at = (r: number, c: number) => Number(cm[r * numClasses + c]!)
  const iou: Array<number | null> = []
  const excluded: number[] = []
  let correct = 0
  let total = 0
  for (let k = 0; k < numClasses; k++) {
    let row = 0
    let col = 0
    for (let j = 0; j < numClasses; j++) { row += at(k, j); col += at(j, k) }
    const tp = at(k, k)
    const union = row + col - tp
    correct += tp
    total += row
    if (union === 0) { iou.push(null); excluded.push(k) } else iou.push(tp / union)
  }
  const present = iou.filter((v): v is number => v !== null)
  const mean = reduce === 'mean' ? (excluded.length ? NaN : present.reduce((a, b) => a + b, 0) / numClasses)
    : present.length ? present.reduce((a, b) => a + b, 0) / present.length : 0
  return {
    miou: mean,
    iou, excluded, pixel_accuracy: total ? correct / total : 0,
  }
}
