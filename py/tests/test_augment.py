"""prcl_worker.augment (prcl-method.md §4 steps 3-5, §5, §6, Q-aug-1/5/7).

Decoding (PNG round trip, JPEG, palette/greyscale labels, lut, errors, thread pool),
normalisation, rescale/pad/crop (identity, padding values, reflection equal to np.pad, nearest
labels, bad crops), flip, colour jitter (identity, brightness scaling, order), Gaussian blur
(identity, constants, smoothing, against a NumPy reference), confidence quantisation, the mix
modes (determinism, n = 1, one mask for all three tensors, boxes, dispatch), augment_one and
augment_batch, float64 inputs, and CUDA when present. Small images keep it fast.
"""

import io
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

import prcl_worker.augment as A
from prcl_worker.augment import (
    apply_mix,
    augment_batch,
    augment_one,
    classmix,
    color_jitter,
    cutmix,
    cutout,
    decode_batch,
    decode_image,
    decode_label,
    denormalize,
    gaussian_blur,
    gaussian_kernel1d,
    hflip,
    isin,
    normalize,
    quantize_conf,
    reflect_pad,
    rescale_pad_crop,
    valid_box,
)
from prcl_worker.augment import mix as mix_mod

CUDA = torch.cuda.is_available()


def png_bytes(img, **kw):
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def rand_uint8(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def rand_img(h=12, w=16, seed=0, dtype=torch.float32):
    """A normalised image whose de-normalised values lie in [0.05, 0.95]."""
    g = torch.Generator().manual_seed(seed)
    x = 0.05 + 0.9 * torch.rand(3, h, w, generator=g, dtype=torch.float64)
    return normalize(x).to(dtype)


def rand_label(h=12, w=16, n=5, seed=0, ignore=True):
    g = torch.Generator().manual_seed(seed)
    lab = torch.randint(0, n, (h, w), generator=g)
    if ignore:
        lab[torch.rand(h, w, generator=g) < 0.1] = -1
    return lab


def rand_conf(h=12, w=16, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(h, w, generator=g, dtype=torch.float64).to(dtype)


# ----------------------------------------------------------------------------- decoding

def test_png_round_trip_exact_and_input_types():
    arr = rand_uint8(13, 17)
    data = png_bytes(Image.fromarray(arr))
    out = decode_image(data)
    assert out.dtype == torch.uint8 and out.shape == (3, 13, 17)
    assert torch.equal(out, torch.from_numpy(arr).permute(2, 0, 1))
    assert torch.equal(decode_image(memoryview(data)), out)
    assert torch.equal(decode_image(bytearray(data)), out)
    assert torch.equal(decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8)), out)
    with pytest.raises(ValueError, match="uint8"):
        decode_image(torch.zeros(10, dtype=torch.int32))


def test_jpeg_and_greyscale_image_decode_to_rgb():
    arr = np.full((20, 24, 3), (200, 40, 90), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    out = decode_image(buf.getvalue())
    assert out.dtype == torch.uint8 and out.shape == (3, 20, 24)
    assert (out.int() - torch.tensor([200, 40, 90]).view(3, 1, 1)).abs().max() <= 4
    grey = decode_image(png_bytes(Image.fromarray(np.full((5, 6), 77, np.uint8), mode="L")))
    assert grey.shape == (3, 5, 6) and bool((grey == 77).all())


def _palette_label():
    idx = np.array(list(range(21)) + [255] * 3, dtype=np.uint8).reshape(4, 6)
    img = Image.fromarray(idx, mode="P")
    pal = np.random.default_rng(1).integers(0, 256, 768).tolist()  # arbitrary colours
    img.putpalette(pal)
    return idx, img


def test_palette_label_keeps_indices():
    idx, img = _palette_label()
    lab = decode_label(png_bytes(img))
    assert lab.dtype == torch.int64 and lab.shape == (4, 6)
    want = torch.from_numpy(idx).long()
    want[want == 255] = -1
    assert torch.equal(lab, want)
    assert sorted(lab.unique().tolist()) == [-1] + list(range(21))


def test_greyscale_label():
    idx = np.array([[0, 3, 255], [18, 255, 7]], dtype=np.uint8)
    lab = decode_label(png_bytes(Image.fromarray(idx, mode="L")))
    assert torch.equal(lab, torch.tensor([[0, 3, -1], [18, -1, 7]]))


def test_label_lut_applied_before_ignore():
    # A Cityscapes-like map: 7 → 0 (road), 26 → 13 (car), everything else → 255 → -1.
    lut = torch.full((256,), 255, dtype=torch.uint8)
    lut[7], lut[26], lut[33] = 0, 13, 18
    idx = np.array([[7, 26, 0], [33, 255, 4]], dtype=np.uint8)
    lab = decode_label(png_bytes(Image.fromarray(idx, mode="L")), lut=lut)
    assert torch.equal(lab, torch.tensor([[0, 13, -1], [18, -1, -1]]))
    with pytest.raises(ValueError, match="256"):
        decode_label(png_bytes(Image.fromarray(idx, mode="L")),
                     lut=torch.zeros(10, dtype=torch.uint8))


def test_decode_errors():
    with pytest.raises(ValueError, match="cannot decode image"):
        decode_image(b"definitely not an image")
    with pytest.raises(ValueError, match="cannot decode image"):
        decode_label(b"\x89PNG\r\n\x1a\n garbage")
    good = png_bytes(Image.fromarray(rand_uint8(8, 8)))
    with pytest.raises(ValueError, match="cannot decode image"):
        decode_image(good[: len(good) // 2])
    with pytest.raises(ValueError, match="'RGB'"):
        decode_label(good)


def test_decode_batch_thread_pool_matches_serial():
    items = []
    for i in range(6):
        arr = rand_uint8(9 + i, 11, seed=i)
        lab = np.random.default_rng(i).integers(0, 21, (9 + i, 11)).astype(np.uint8)
        items.append((png_bytes(Image.fromarray(arr)),
                      png_bytes(Image.fromarray(lab, mode="L")) if i % 2 else None))
    serial = decode_batch(items)
    with ThreadPoolExecutor(3) as pool:
        pooled = decode_batch(items, pool=pool)
    assert len(pooled) == 6
    for (a, la), (b, lb) in zip(serial, pooled):
        assert torch.equal(a, b)
        assert (la is None) == (lb is None) and (la is None or torch.equal(la, lb))
    assert serial[0][1] is None and serial[1][1].shape == (10, 11)
    bad = items[:1] + [(b"junk", None)]
    with ThreadPoolExecutor(2) as pool, pytest.raises(ValueError, match="cannot decode"):
        decode_batch(bad, pool=pool)
    mismatch = [(items[0][0], items[1][1])]  # 9x11 image with a 10x11 label
    with pytest.raises(ValueError, match="differs"):
        decode_batch(mismatch)


def test_normalize_denormalize():
    x = torch.tensor([0, 255, 128], dtype=torch.uint8).view(3, 1, 1).expand(3, 2, 2)
    n = normalize(x)
    assert n.dtype == torch.float32
    mean, std = torch.tensor(A.IMAGENET_MEAN), torch.tensor(A.IMAGENET_STD)
    want = (torch.tensor([0, 1.0, 128 / 255]) - mean) / std
    assert torch.allclose(n[:, 0, 0], want, atol=1e-6)
    assert torch.allclose(denormalize(n) * 255, x.float(), atol=1e-4)
    batch = normalize(torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8))
    assert batch.shape == (2, 3, 4, 5)


# ----------------------------------------------------------------------------- geometry

def test_rescale_identity():
    img, lab, conf = rand_img(), rand_label(), rand_conf()
    o_img, o_lab, o_conf = rescale_pad_crop(img, lab, conf, scale=1.0, top=0, left=0,
                                            crop_h=12, crop_w=16)
    assert torch.equal(o_img, img) and torch.equal(o_lab, lab) and torch.equal(o_conf, conf)
    assert rescale_pad_crop(img, None, None, scale=1, top=0, left=0, crop_h=12,
                            crop_w=16)[1:] == (None, None)


def test_rescale_half_then_pad():
    img, lab, conf = rand_img(12, 16), rand_label(12, 16), rand_conf(12, 16) + 0.5
    o_img, o_lab, o_conf = rescale_pad_crop(img, lab, conf, scale=0.5, top=0, left=0,
                                            crop_h=9, crop_w=11)
    assert o_img.shape == (3, 9, 11) and o_lab.shape == (9, 11) and o_conf.shape == (9, 11)
    # rescaled region is 6x8; the rest is padding
    assert bool((o_lab[6:, :] == -1).all()) and bool((o_lab[:, 8:] == -1).all())
    assert bool((o_conf[6:, :] == 0).all()) and bool((o_conf[:, 8:] == 0).all())
    assert bool((o_lab[:6, :8] >= -1).all()) and bool((o_conf[:6, :8] >= 0.5).all())
    # reflection (edge not repeated): padded row 6 mirrors row 4, column 8 mirrors column 6
    assert torch.equal(o_img[:, 6, :8], o_img[:, 4, :8])
    assert torch.equal(o_img[:, 7, :8], o_img[:, 3, :8])
    assert torch.equal(o_img[:, :6, 8], o_img[:, :6, 6])
    assert torch.equal(o_img[:, 8, 10], o_img[:, 2, 4])  # corner: both mirrors
    # the 6x8 region is the bilinear downscale of the input
    small = rescale_pad_crop(img, None, None, scale=0.5, top=0, left=0, crop_h=6, crop_w=8)[0]
    assert torch.equal(o_img[:, :6, :8], small)


@pytest.mark.parametrize("n,left,right", [(5, 0, 13), (3, 7, 0), (4, 9, 11), (1, 2, 3),
                                          (2, 5, 5), (6, 1, 2)])
def test_reflect_pad_equals_numpy(n, left, right):
    x = torch.arange(n * 2, dtype=torch.float64).view(1, 2, n) * 1.5 + 0.25
    y = reflect_pad(x.transpose(-1, -2).contiguous(), 0, 0, left, right).transpose(-1, -2)
    z = reflect_pad(x, left, right, 0, 0)
    want = np.pad(x.numpy(), ((0, 0), (0, 0), (left, right)), mode="reflect")
    assert np.array_equal(z.numpy(), want)
    assert np.array_equal(y.numpy(), want)


def test_large_pad_matches_numpy_2d():
    # the VOC case: a 321 crop after scale 0.5 is 160 wide and needs 161 columns (> 159)
    img = rand_img(5, 7, seed=3, dtype=torch.float64)
    out = rescale_pad_crop(img, None, None, scale=1.0, top=0, left=0, crop_h=19, crop_w=23)[0]
    want = np.pad(img.numpy(), ((0, 0), (0, 14), (0, 16)), mode="reflect")
    assert np.array_equal(out.numpy(), want)


@pytest.mark.parametrize("scale", [0.37, 0.5, 1.3, 2.0])
def test_nearest_keeps_label_and_conf_values(scale):
    lab = rand_label(15, 19, n=7, seed=4)
    conf = torch.floor(rand_conf(15, 19, seed=4) * 10) / 10
    img = rand_img(15, 19, seed=4)
    H, W = math.floor(15 * scale), math.floor(19 * scale)
    o_img, o_lab, o_conf = rescale_pad_crop(img, lab, conf, scale=scale, top=0, left=0,
                                            crop_h=H, crop_w=W)
    assert o_lab.dtype == torch.int64 and o_lab.shape == (H, W) and o_img.shape == (3, H, W)
    assert set(o_lab.unique().tolist()) <= set(lab.unique().tolist())
    assert set(o_conf.unique().tolist()) <= set(conf.unique().tolist())
    if scale == 2.0:  # exact doubling: nearest repeats every pixel twice
        assert torch.equal(o_lab, lab.repeat_interleave(2, 0).repeat_interleave(2, 1))


def test_downscale_is_antialiased_when_supported():
    noise = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64)
    out = rescale_pad_crop(noise, None, None, scale=0.25, top=0, left=0, crop_h=8,
                           crop_w=8)[0]
    assert out.shape == (3, 8, 8)
    plain = torch.nn.functional.interpolate(noise[None], size=(8, 8), mode="bilinear",
                                            align_corners=False)[0]
    if A.geometry._HAS_ANTIALIAS:  # averaging ~16 pixels instead of 4 shrinks the variance
        assert float(out.var()) < 0.6 * float(plain.var())
    else:
        assert torch.equal(out, plain)
    up = rescale_pad_crop(noise, None, None, scale=1.5, top=0, left=0, crop_h=48, crop_w=48)[0]
    plain_up = torch.nn.functional.interpolate(noise[None], size=(48, 48), mode="bilinear",
                                               align_corners=False)[0]
    assert torch.equal(up, plain_up)


def test_bad_crop_raises():
    img, lab = rand_img(), rand_label()
    with pytest.raises(ValueError, match=r"top=4.*12x16"):
        rescale_pad_crop(img, lab, None, scale=1.0, top=4, left=0, crop_h=10, crop_w=10)
    with pytest.raises(ValueError, match="scale"):
        rescale_pad_crop(img, lab, None, scale=0.0, top=0, left=0, crop_h=4, crop_w=4)
    with pytest.raises(ValueError, match="left=-1"):
        rescale_pad_crop(img, lab, None, scale=1.0, top=0, left=-1, crop_h=4, crop_w=4)
    with pytest.raises(ValueError, match="label shape"):
        rescale_pad_crop(img, lab[:5], None, scale=1.0, top=0, left=0, crop_h=4, crop_w=4)
    # scale 0.5 of 12x16 is 6x8: a 6-row crop may start only at 0 unless padded
    with pytest.raises(ValueError, match="6x8"):
        rescale_pad_crop(img, lab, None, scale=0.5, top=1, left=0, crop_h=6, crop_w=4)
    assert rescale_pad_crop(img, lab, None, scale=0.5, top=1, left=0, crop_h=5,
                            crop_w=4)[0].shape == (3, 5, 4)


def test_hflip():
    img, lab, conf = rand_img(), rand_label(), rand_conf()
    f_img, f_lab, f_conf = hflip(img, lab, conf)
    assert torch.equal(f_img[:, :, 0], img[:, :, -1]) and torch.equal(f_lab[:, 3], lab[:, -4])
    assert torch.equal(f_conf[2, 5], conf[2, -6])
    b_img, b_lab, b_conf = hflip(f_img, f_lab, f_conf)
    assert torch.equal(b_img, img) and torch.equal(b_lab, lab) and torch.equal(b_conf, conf)
    assert hflip(img, None, None)[1:] == (None, None)


# ----------------------------------------------------------------------------- photometric

def test_jitter_identity():
    img = rand_img()
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], torch.tensor([2, 0, 3, 1])):
        out = color_jitter(img, 1.0, 1.0, 1.0, 0.0, order)
        assert (out - img).abs().max() < 1e-5


def test_jitter_brightness_scales_denormalised():
    img = rand_img(seed=2)
    b = 0.8  # values stay in [0, 1], so no clamping happens
    out = color_jitter(img, b, 1.0, 1.0, 0.0, [0, 1, 2, 3])
    assert torch.allclose(denormalize(out), b * denormalize(img), atol=1e-5)
    out = color_jitter(img, 1.25, 1.0, 1.0, 0.0, [0, 1, 2, 3])  # clamps at 1
    x = denormalize(img)
    assert torch.allclose(denormalize(out), (1.25 * x).clamp(max=1), atol=1e-5)


def test_jitter_order_matters_and_validates():
    img = rand_img(seed=5)
    a = color_jitter(img, 1.2, 0.8, 1.25, 0.2, [0, 1, 2, 3])
    b = color_jitter(img, 1.2, 0.8, 1.25, 0.2, [3, 2, 1, 0])
    assert (a - b).abs().max() > 1e-3
    assert torch.equal(a, color_jitter(img, 1.2, 0.8, 1.25, 0.2, [0, 1, 2, 3]))
    d = denormalize(a)
    assert float(d.min()) >= -1e-6 and float(d.max()) <= 1 + 1e-6
    with pytest.raises(ValueError, match="permutation"):
        color_jitter(img, 1, 1, 1, 0, [0, 1, 1, 3])
    with pytest.raises(ValueError, match="hue"):
        color_jitter(img, 1, 1, 1, 0.6, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="contrast"):
        color_jitter(img, 1, -0.1, 1, 0, [0, 1, 2, 3])


def test_blur_identity_constant_and_smoothing():
    img = rand_img(20, 20, seed=6)
    assert torch.equal(gaussian_blur(img, 0.0), img)
    const = normalize(torch.full((3, 10, 12), 0.3))
    out = gaussian_blur(const, 1.15)
    assert torch.allclose(out, const, atol=1e-5)
    assert torch.allclose(out.mean((1, 2)), const.mean((1, 2)), atol=1e-6)
    v = [float(gaussian_blur(img, s).var()) for s in (0.0, 0.4, 0.7, 1.15)]
    assert v[0] > v[1] > v[2] > v[3]
    assert gaussian_kernel1d(1.0).numel() == 7 and gaussian_kernel1d(0.15).numel() == 3
    assert gaussian_kernel1d(1.15).numel() == 9
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(img, -1.0)


def test_blur_matches_numpy_reference_on_denormalised_image():
    img = rand_img(9, 11, seed=7, dtype=torch.float64)
    sigma = 0.8
    r = math.ceil(3 * sigma)
    t = np.arange(-r, r + 1)
    k = np.exp(-t ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    x = denormalize(img).numpy()
    p = np.pad(x, ((0, 0), (r, r), (r, r)), mode="reflect")
    want = np.zeros_like(x)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            want += k[dy] * k[dx] * p[:, dy:dy + 9, dx:dx + 11]
    got = denormalize(gaussian_blur(img, sigma)).numpy()
    assert np.abs(got - want).max() < 1e-12


def test_quantize_conf():
    c = torch.tensor([0.7, 0.97, 0.0, 1.0, 179 / 255, 0.999])
    q = quantize_conf(c)
    assert torch.equal(q * 255, torch.tensor([178.0, 247.0, 0.0, 255.0, 179.0, 254.0]))
    assert float(q[0]) == pytest.approx(178 / 255)
    r = rand_conf(30, 30)
    assert torch.equal(quantize_conf(r), torch.floor(r * 255) / 255)
    assert torch.equal(quantize_conf(quantize_conf(r)), quantize_conf(r))
    assert bool((quantize_conf(r) <= r).all())


# ----------------------------------------------------------------------------- mixing

def _batch(B=4, h=10, w=12, seed=0, dtype=torch.float32):
    imgs = torch.stack([rand_img(h, w, seed=seed + i, dtype=dtype) for i in range(B)])
    labels = torch.stack([rand_label(h, w, n=6, seed=seed + i) for i in range(B)])
    confs = torch.stack([rand_conf(h, w, seed=seed + i, dtype=dtype) for i in range(B)])
    return imgs, labels, confs


def test_classmix_deterministic_and_seed_dependent():
    imgs, labels, confs = _batch()
    a = classmix(imgs, labels, confs, [1, 2, 3, 4], ignore_is_class=True)
    b = classmix(imgs, labels, confs, [1, 2, 3, 4], ignore_is_class=True)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    masks = [classmix(imgs, labels, confs, [s] * 4, ignore_is_class=True)[3] for s in range(8)]
    assert any(not torch.equal(masks[0], m) for m in masks[1:])


def test_classmix_mask_construction():
    imgs, labels, confs = _batch(B=3)
    seeds = [11, 22, 33]
    o_img, o_lab, o_conf, m = classmix(imgs, labels, confs, seeds, ignore_is_class=True)
    assert m.shape == labels.shape and m.dtype == imgs.dtype
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    for i in range(3):
        vals = torch.unique(labels[i])  # includes -1 (ignore is a class by default)
        n = vals.numel()
        assert -1 in vals.tolist()
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seeds[i]))
        kept = vals[perm[: n // 2]]
        want = torch.zeros_like(labels[i], dtype=torch.bool)
        for v in kept:
            want |= labels[i] == v
        assert torch.equal(m[i].bool(), want)
        j = (i + 1) % 3
        keep = m[i].bool()
        assert torch.equal(o_lab[i], torch.where(keep, labels[i], labels[j]))
        assert torch.equal(o_conf[i], torch.where(keep, confs[i], confs[j]))
        assert torch.equal(o_img[i], torch.where(keep, imgs[i], imgs[j]))
        assert torch.equal(o_img[i], imgs[i] * m[i] + imgs[j] * (1 - m[i]))
    # inputs untouched
    assert torch.equal(labels, _batch(B=3)[1])


def test_classmix_single_class_takes_partner():
    imgs, labels, confs = _batch(B=3)
    labels[1] = 4
    o_img, o_lab, o_conf, m = classmix(imgs, labels, confs, [5, 6, 7], ignore_is_class=True)
    assert bool((m[1] == 0).all())
    assert torch.equal(o_img[1], imgs[2]) and torch.equal(o_lab[1], labels[2])
    assert torch.equal(o_conf[1], confs[2])


def test_classmix_ignore_not_a_class():
    imgs, labels, confs = _batch(B=2)
    for s in range(5):
        m = classmix(imgs, labels, confs, [s, s + 1], ignore_is_class=False)[3]
        assert bool((m[labels == -1] == 0).all())
        for i in range(2):
            kept = labels[i][m[i].bool()].unique()
            n_valid = (labels[i].unique() >= 0).sum().item()
            assert kept.numel() == n_valid // 2


def test_classmix_batch_of_one_is_identity_and_errors():
    imgs, labels, confs = _batch(B=1)
    o = classmix(imgs, labels, confs, [3], ignore_is_class=True)
    assert torch.equal(o[0], imgs) and torch.equal(o[1], labels) and torch.equal(o[2], confs)
    with pytest.raises(ValueError, match="seeds"):
        classmix(imgs, labels, confs, [1, 2], ignore_is_class=True)
    with pytest.raises(ValueError, match="integer"):
        classmix(imgs, labels, confs, ["x"], ignore_is_class=True)


def test_isin_fallback(monkeypatch):
    x = torch.tensor([[-1, 0, 3], [5, 3, 2]])
    vals = torch.tensor([3, -1])
    want = torch.tensor([[True, False, True], [False, True, False]])
    assert torch.equal(isin(x, vals), want)
    monkeypatch.delattr(torch, "isin", raising=False)
    assert torch.equal(mix_mod.isin(x, vals), want)
    assert torch.equal(mix_mod.isin(x, vals[:0]), torch.zeros_like(want))


def test_cutmix_box():
    imgs, labels, confs = _batch(B=3)
    boxes = [(1, 2, 4, 5), (0, 0, 10, 12), (3, 3, 0, 0)]
    o_img, o_lab, o_conf, m = cutmix(imgs, labels, confs, boxes)
    for i, (t, l, h, w) in enumerate(boxes):
        j = (i + 1) % 3
        inside = torch.zeros(10, 12, dtype=torch.bool)
        inside[t:t + h, l:l + w] = True
        assert torch.equal(m[i].bool(), ~inside)
        assert torch.equal(o_img[i][:, inside], imgs[j][:, inside])
        assert torch.equal(o_img[i][:, ~inside], imgs[i][:, ~inside])
        assert torch.equal(o_lab[i][inside], labels[j][inside])
        assert torch.equal(o_lab[i][~inside], labels[i][~inside])
        assert torch.equal(o_conf[i][inside], confs[j][inside])
        assert torch.equal(o_conf[i][~inside], confs[i][~inside])


def test_cutout_box():
    imgs, labels, confs = _batch(B=2)
    o_img, o_lab, o_conf, m = cutout(imgs, labels, confs, [[2, 3, 4, 5], [0, 0, 1, 1]])
    assert bool((o_img[0, :, 2:6, 3:8] == 0).all()) and bool((o_lab[0, 2:6, 3:8] == -1).all())
    assert bool((o_conf[0, 2:6, 3:8] == 0).all())
    keep = m[0].bool()
    assert int((~keep).sum()) == 20
    assert torch.equal(o_img[0][:, keep], imgs[0][:, keep])
    assert torch.equal(o_lab[0][keep], labels[0][keep])
    assert o_lab[1, 0, 0] == -1 and torch.equal(o_lab[1, 1:], labels[1, 1:])


def test_valid_box_and_apply_mix():
    assert valid_box([1, 2, 3, 4], 10, 12) == (1, 2, 3, 4)
    with pytest.raises(ValueError, match=r"top=8, left=2, h=3, w=4"):
        valid_box((8, 2, 3, 4), 10, 12)
    with pytest.raises(ValueError, match="4 integers"):
        valid_box((1, 2, 3), 10, 12)
    imgs, labels, confs = _batch(B=2)
    with pytest.raises(ValueError, match="does not fit"):
        cutmix(imgs, labels, confs, [(0, 0, 11, 1), (0, 0, 1, 1)])
    a = apply_mix("classmix", imgs, labels, confs, [{"seed": 1}, {"seed": 2}], ignore_is_class=True)
    b = classmix(imgs, labels, confs, [1, 2], ignore_is_class=True)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    a = apply_mix("cutmix", imgs, labels, confs, [{"box": [0, 0, 2, 2]}, {"box": [1, 1, 3, 3]}], ignore_is_class=True)
    b = cutmix(imgs, labels, confs, [(0, 0, 2, 2), (1, 1, 3, 3)])
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    a = apply_mix("cutout", imgs, labels, confs, [{"box": [0, 0, 2, 2]}, {"box": [1, 1, 3, 3]}], ignore_is_class=True)
    assert bool((a[1][0, :2, :2] == -1).all())
    n = apply_mix("none", imgs, labels, confs, None, ignore_is_class=True)
    assert n[0] is imgs and n[1] is labels and bool((n[3] == 1).all())
    with pytest.raises(ValueError, match="classmix.*cutmix.*cutout.*none"):
        apply_mix("mixup", imgs, labels, confs, [{}, {}], ignore_is_class=True)
    with pytest.raises(ValueError, match="'seed'"):
        apply_mix("classmix", imgs, labels, confs, [{"seed": 1}, {"box": [0, 0, 1, 1]}], ignore_is_class=True)
    with pytest.raises(ValueError, match="params"):
        apply_mix("cutmix", imgs, labels, confs, [{"box": [0, 0, 1, 1]}], ignore_is_class=True)


# ----------------------------------------------------------------------------- augment_one

PARAMS = {
    "rescale": {"scale": 0.8, "top": 1, "left": 2, "crop_h": 8, "crop_w": 10},
    "flip": True,
    "jitter": {"brightness": 1.1, "contrast": 0.9, "saturation": 1.2, "hue": -0.1,
               "order": [2, 0, 3, 1]},
    "blur": {"sigma": 0.7},
}


def test_augment_one_deterministic_and_composed():
    img, lab, conf = rand_img(14, 18), rand_label(14, 18), rand_conf(14, 18)
    a = augment_one(img, lab, conf, PARAMS)
    b = augment_one(img, lab, conf, PARAMS)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert a[0].shape == (3, 8, 10) and a[1].shape == (8, 10) and a[2].shape == (8, 10)
    # label/conf only see rescale and flip
    r = rescale_pad_crop(img, lab, conf, **PARAMS["rescale"])
    _, f_lab, f_conf = hflip(*r)
    assert torch.equal(a[1], f_lab) and torch.equal(a[2], f_conf)
    # the image is the explicit composition (flip commutes with jitter and blur)
    j = PARAMS["jitter"]
    want = gaussian_blur(color_jitter(r[0], j["brightness"], j["contrast"], j["saturation"],
                                      j["hue"], j["order"]), 0.7)
    assert torch.allclose(a[0], hflip(want)[0], atol=1e-5)
    ident = augment_one(img, lab, conf, {"flip": False, "jitter": None, "blur": None})
    assert torch.equal(ident[0], img) and torch.equal(ident[1], lab)
    with pytest.raises(ValueError, match="unknown augment params"):
        augment_one(img, lab, conf, {"rotate": 3})
    with pytest.raises(ValueError, match="missing"):
        augment_one(img, lab, conf, {"rescale": {"scale": 1.0}})
    with pytest.raises(ValueError, match="flip"):
        augment_one(img, lab, conf, {"flip": "yes"})


def test_augment_batch():
    imgs = [rand_img(14, 18, seed=0), rand_img(20, 16, seed=1)]
    labels = [rand_label(14, 18, seed=0), rand_label(20, 16, seed=1)]
    p0 = {"rescale": {"scale": 1.0, "top": 0, "left": 0, "crop_h": 8, "crop_w": 10}}
    p1 = {"rescale": {"scale": 0.5, "top": 1, "left": 0, "crop_h": 8, "crop_w": 10},
          "flip": True}
    o_img, o_lab, o_conf = augment_batch(imgs, labels, None, [p0, p1])
    assert o_img.shape == (2, 3, 8, 10) and o_lab.shape == (2, 8, 10) and o_conf is None
    assert torch.equal(o_img[0], imgs[0][:, :8, :10])
    assert torch.equal(o_lab[1], augment_one(imgs[1], labels[1], None, p1)[1])
    stacked = torch.stack([rand_img(12, 16, seed=s) for s in range(3)])
    out = augment_batch(stacked, None, None, [{"flip": True}, {}, None])[0]
    assert torch.equal(out[0], stacked[0].flip(-1)) and torch.equal(out[1:], stacked[1:])
    with pytest.raises(ValueError, match="differ in size"):
        augment_batch(imgs, labels, None, [p0, {"flip": True}])
    with pytest.raises(ValueError, match="entries"):
        augment_batch(imgs, labels, None, [p0])


def test_float64_inputs():
    d = torch.float64
    img, lab, conf = rand_img(14, 18, dtype=d), rand_label(14, 18), rand_conf(14, 18, dtype=d)
    out = augment_one(img, lab, conf, PARAMS)
    assert out[0].dtype == d and out[2].dtype == d and out[1].dtype == torch.int64
    assert torch.allclose(out[0].float(), augment_one(img.float(), lab, conf.float(),
                                                      PARAMS)[0], atol=1e-4)
    assert quantize_conf(conf).dtype == d and denormalize(img).dtype == d
    imgs, labels, confs = _batch(B=2, dtype=d)
    for o in (classmix(imgs, labels, confs, [0, 1], ignore_is_class=True),
              cutmix(imgs, labels, confs, [(0, 0, 2, 2)] * 2),
              cutout(imgs, labels, confs, [(0, 0, 2, 2)] * 2)):
        assert o[0].dtype == d and o[2].dtype == d and o[3].dtype == d


@pytest.mark.skipif(not CUDA, reason="CUDA not available")
def test_cuda_matches_cpu():
    dev = torch.device("cuda")
    img, lab, conf = rand_img(14, 18), rand_label(14, 18), rand_conf(14, 18)
    cpu = augment_one(img, lab, conf, PARAMS)
    gpu = augment_one(img.to(dev), lab.to(dev), conf.to(dev), PARAMS)
    assert all(t.device.type == "cuda" for t in gpu)
    assert torch.allclose(gpu[0].cpu(), cpu[0], atol=1e-4)
    assert torch.equal(gpu[1].cpu(), cpu[1]) and torch.equal(gpu[2].cpu(), cpu[2])
    imgs, labels, confs = _batch(B=3)
    c = classmix(imgs, labels, confs, [1, 2, 3], ignore_is_class=True)
    g = classmix(imgs.to(dev), labels.to(dev), confs.to(dev), [1, 2, 3], ignore_is_class=True)
    for x, y in zip(c, g):
        assert y.device.type == "cuda" and torch.equal(x, y.cpu())
    o = cutout(imgs.to(dev), labels.to(dev), confs.to(dev), [(0, 0, 2, 2)] * 3)
    assert o[1].device.type == "cuda" and bool((o[1][:, :2, :2] == -1).all())
