"""Photograph-like images and label PNGs for the input-path benchmarks (`prcl bench data`,
bench/gpu_check.py): smooth colour fields, edges and noise, so JPEG and PNG compress them about
as they do real photographs (a 500×375 JPEG at quality 90: ~110 kB; a 2048×1024 PNG: ~4 MB).

    python3 bench/make_images.py OUT KIND WIDTH HEIGHT JPEG|PNG COUNT

writes OUT/KIND-<i>.jpg|png and OUT/KIND-<i>-label.png.
"""

import io
import sys

import numpy as np
from PIL import Image


def encoded(width, height, fmt, count, seed=0):
    """[(image bytes, label PNG bytes)] × count."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        coarse = rng.integers(0, 256, (height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC)).astype(np.int16)
        img = Image.fromarray(np.clip(base + rng.integers(-12, 13, (height, width, 3)), 0, 255).astype(np.uint8))
        blocks = rng.integers(0, 19, (height // 64 + 1, width // 64 + 1), dtype=np.uint8)
        lbl = Image.fromarray(blocks).resize((width, height), Image.NEAREST)
        pair = []
        for picture, f, kw in ((img, fmt, {"quality": 90} if fmt == "JPEG" else {}), (lbl, "PNG", {})):
            buf = io.BytesIO()
            picture.save(buf, f, **kw)
            pair.append(buf.getvalue())
        out.append(tuple(pair))
    return out


def main(argv):
    out, kind, width, height, fmt, count = argv[0], argv[1], int(argv[2]), int(argv[3]), argv[4], int(argv[5])
    ext = "jpg" if fmt == "JPEG" else "png"
    for i, (img, lbl) in enumerate(encoded(width, height, fmt, count)):
        with open(f"{out}/{kind}-{i}.{ext}", "wb") as f:
            f.write(img)
        with open(f"{out}/{kind}-{i}-label.png", "wb") as f:
            f.write(lbl)


if __name__ == "__main__":
    main(sys.argv[1:])
