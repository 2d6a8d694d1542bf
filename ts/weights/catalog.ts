// The ImageNet backbone weights prcl starts from: torchvision's IMAGENET1K_V1 files, as the
// released code uses (`resnet101-63fe2227.pth`, method spec §2). Each file's name carries the
// first 8 hex digits of its sha256 (torchvision's own check); the whole digest is pinned here, so
// a file is vouched for by every one of its bytes, not by a prefix.
export interface WeightsFile {
  /** The backbone (model.backbone) these weights fit, at width 1. */
  backbone: string
  file: string
  url: string
  sha256: string
}

const BASE = 'https://download.pytorch.org/models/'

function tv(backbone: string, file: string, sha256: string): WeightsFile {
  return { backbone, file, url: BASE + file, sha256 }
}

export const IMAGENET: Readonly<Record<string, WeightsFile>> = {
  resnet18: tv('resnet18', 'resnet18-f37072fd.pth', 'f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec'),
  resnet50: tv('resnet50', 'resnet50-0676ba61.pth', '0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a'),
  resnet101: tv('resnet101', 'resnet101-63fe2227.pth', '63fe2227b86e8f1f2063f43a75c84d195911b6a0eace650907dd3dc62dd49a0a'),
}

/** The catalog's entry with this sha256, if any: a file prcl knows, whatever its name. */
export function knownFile(sha256: string, catalog: Readonly<Record<string, WeightsFile>> = IMAGENET): WeightsFile | undefined {
  return Object.values(catalog).find((w) => w.sha256 === sha256)
}
