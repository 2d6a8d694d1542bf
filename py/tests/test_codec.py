"""prcl_worker.codec: tensors <-> wire frames.

Covers bit-exact round trips for every wire dtype (all 65536 patterns of the 16-bit floats,
NaN/inf/-0.0/denormals of the wider ones), 0-d and empty tensors, contiguity on send, numpy
results, the small-frame copy / large-frame zero-copy rule on receive, the metadata checks
that run before any buffer is touched, and the errors for values the wire cannot carry.
"""

import warnings

import numpy as np
import pytest
import torch

from prcl_worker.codec import (
    DTYPES,
    SMALL_FRAME,
    check_tensor_meta,
    decode_tensors,
    encode_tensors,
    frame_to_tensor,
    tensor_to_frame,
)
from prcl_worker.errors import BadMessage

# An integer dtype of the same width, to compare floats bit for bit (NaN != NaN otherwise).
BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def bits(t):
    """The raw bit patterns of a tensor, as an integer tensor of the same shape."""
    t = t.contiguous()
    if t.dtype == torch.bool:
        return t.view(torch.uint8)
    return t.view(BITS[t.element_size()])


def roundtrip(t):
    """tensor -> (meta, array) -> tensor over a memoryview of that array."""
    meta, arr = tensor_to_frame(t, "x")
    back = frame_to_tensor(memoryview(arr), meta["dtype"], meta["shape"])
    return meta, arr, back


def assert_bit_exact(a, b):
    assert b.dtype == a.dtype
    assert list(b.shape) == list(a.shape)
    assert torch.equal(bits(a), bits(b))


def all_16bit(dtype):
    return torch.arange(-2**15, 2**15, dtype=torch.int32).to(torch.int16).view(dtype)


def sample(name):
    """A tensor of the named wire dtype with its awkward values."""
    tdt = DTYPES[name][1]
    if name in ("float16", "bfloat16"):
        return all_16bit(tdt)
    if tdt.is_floating_point:
        info = torch.finfo(tdt)
        tiny = info.tiny
        vals = [0.0, -0.0, 1.0, -1.5, float("nan"), float("inf"), float("-inf"), info.max, -info.max,
                tiny, tiny / 2, tiny / 1024, -tiny / 4, info.eps]
        t = torch.tensor(vals, dtype=tdt)
        assert (t[-5:-1] != 0).all() and (t[-4:-1].abs() < tiny).all()  # denormals really are denormal
        # a NaN with a payload and a negative NaN, by bit pattern
        nans = torch.tensor([-1, 0x7FC00001 if tdt == torch.float32 else 0x7FF8000000000001],
                            dtype=BITS[info.bits // 8]).view(tdt)
        return torch.cat([t, nans]).reshape(4, 4)
    if tdt == torch.bool:
        return torch.tensor([[True, False, True], [False, False, True]])
    info = torch.iinfo(tdt)
    return torch.tensor([info.min, info.min + 1, -1 if info.min < 0 else 1, 0, 1, info.max - 1, info.max],
                        dtype=tdt)


# -- round trips --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(DTYPES))
def test_roundtrip_bit_exact(name):
    t = sample(name)
    meta, arr, back = roundtrip(t)
    assert meta == {"name": "x", "dtype": name, "shape": list(t.shape), "nbytes": t.numel() * t.element_size()}
    assert arr.nbytes == meta["nbytes"]
    assert arr.tobytes() == bits(t).numpy().tobytes()
    assert_bit_exact(t, back)


@pytest.mark.parametrize("name", list(DTYPES))
@pytest.mark.parametrize("shape", [[], [0], [3, 0, 2]])
def test_zero_d_and_empty(name, shape):
    tdt = DTYPES[name][1]
    t = torch.ones(shape, dtype=tdt) if shape == [] else torch.empty(shape, dtype=tdt)
    meta, arr, back = roundtrip(t)
    assert meta["shape"] == shape
    assert meta["nbytes"] == t.numel() * t.element_size() == arr.nbytes
    assert_bit_exact(t, back)
    if shape == []:
        assert back.dim() == 0 and bool(back.item() == 1)


def test_little_endian_on_the_wire():
    _, arr = tensor_to_frame(torch.tensor([1], dtype=torch.int32), "x")
    assert arr.tobytes() == b"\x01\x00\x00\x00"
    _, arr = tensor_to_frame(torch.tensor([1.0], dtype=torch.bfloat16), "x")
    assert arr.tobytes() == b"\x80\x3f"  # bfloat16 1.0 is 0x3F80
    assert frame_to_tensor(memoryview(b"\x80\x3f"), "bfloat16", []).item() == 1.0


def test_encode_decode_loopback():
    """encode_tensors' frames decode with decode_tensors, with the header as frame 0."""
    tensors = {"a": sample("float32"), "b": all_16bit(torch.bfloat16)[:7].reshape(7, 1), "c": sample("bool")}
    meta, frames = encode_tensors(tensors)
    assert [m["frame"] for m in meta] == [1, 2, 3]
    out = decode_tensors(meta, [b"header"] + frames)
    assert list(out) == ["a", "b", "c"]
    for name in tensors:
        assert_bit_exact(tensors[name], out[name])


# -- sending ------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda x: x.t(),
    lambda x: x[:, ::2],
    lambda x: x[:1].expand(5, 6),
    lambda x: x[2:],  # contiguous, but not at the start of its storage
    lambda x: x.t().to(torch.bfloat16),
], ids=["transposed", "strided", "expanded", "offset", "bf16-transposed"])
def test_non_contiguous_sent_as_contiguous(make):
    x = make(torch.arange(30, dtype=torch.float32).reshape(5, 6))
    meta, arr = tensor_to_frame(x, "x")
    assert meta["shape"] == list(x.shape)
    assert arr.tobytes() == bits(x.contiguous()).numpy().tobytes()
    assert_bit_exact(x, frame_to_tensor(memoryview(arr), meta["dtype"], meta["shape"]))


def test_contiguous_tensor_is_not_copied():
    x = torch.arange(12, dtype=torch.int64)
    _, arr = tensor_to_frame(x, "x")
    assert arr.ctypes.data == x.data_ptr()


def test_requires_grad_tensor_is_sent():
    x = torch.ones(3, requires_grad=True) * 2
    meta, arr = tensor_to_frame(x, "x")
    assert meta["dtype"] == "float32" and arr.tolist() == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("order", ["C", "F"])
def test_numpy_results(order):
    a = np.asarray(np.arange(12, dtype=np.float64).reshape(3, 4), order=order)
    meta, arr = tensor_to_frame(a, "n")
    assert meta == {"name": "n", "dtype": "float64", "shape": [3, 4], "nbytes": 96}
    assert arr.tobytes() == np.ascontiguousarray(a).tobytes()
    back = frame_to_tensor(memoryview(arr), "float64", [3, 4])
    assert np.array_equal(back.numpy(), a)


def test_numpy_results_other_dtypes():
    for a, name in [(np.array([1, 2], dtype=np.uint8), "uint8"), (np.array([True]), "bool"),
                    (np.array([[1]], dtype=np.int16)[:, ::-1], "int16")]:
        meta, arr = tensor_to_frame(a, "n")
        assert meta["dtype"] == name and arr.tobytes() == np.ascontiguousarray(a).tobytes()


@pytest.mark.parametrize("make", [
    lambda: np.arange(6, dtype=np.float32).reshape(1, 6)[::-1],  # flipping a batch of one
    lambda: np.array([5.0])[::-1],
    lambda: np.arange(6, dtype=np.int32).reshape(2, 3)[::-1],
], ids=["batch-of-one", "one-element", "two-rows"])
def test_numpy_results_with_negative_strides(make):
    a = make()
    meta, arr = tensor_to_frame(a, "n")
    assert meta["shape"] == list(a.shape)
    assert arr.tobytes() == np.ascontiguousarray(a).tobytes() == a.copy().tobytes()


@pytest.mark.parametrize("value, match", [
    (torch.zeros(2, dtype=torch.complex64), "complex64"),
    ([1.0, 2.0], "list"),
    (3.0, "float"),
    (None, "NoneType"),
])
def test_unsendable_values(value, match):
    with pytest.raises(TypeError, match=match):
        tensor_to_frame(value, "bad")


# -- receiving ----------------------------------------------------------------------------------

def aligned_bytearray(n, offset=0, align=64):
    """A writable bytearray and a memoryview of n bytes in it at `offset` past an aligned address."""
    buf = bytearray(n + 2 * align)
    base = np.frombuffer(buf, dtype=np.uint8).ctypes.data
    start = (-base) % align + offset
    return buf, memoryview(buf)[start:start + n]


@pytest.mark.parametrize("name", ["float32", "float64", "int64", "bfloat16", "float16"])
def test_small_frames_are_copied_to_aligned_memory(name):
    t = sample(name).reshape(-1)[:16]
    _, arr = tensor_to_frame(t, "x")
    buf, view = aligned_bytearray(arr.nbytes, offset=1)
    view[:] = arr.tobytes()
    back = frame_to_tensor(view, name, list(t.shape))
    assert back.data_ptr() % t.element_size() == 0
    assert_bit_exact(t, back)
    buf[:] = bytes(len(buf))  # a copy: later changes to the buffer do not show
    assert_bit_exact(t, back)


@pytest.mark.parametrize("name", ["float32", "float64", "bfloat16"])
def test_large_unaligned_frames_are_copied(name):
    tdt, size = DTYPES[name][1], DTYPES[name][2]
    t = torch.arange(SMALL_FRAME // size + 8, dtype=torch.float32).to(tdt)
    _, arr = tensor_to_frame(t, "x")
    assert arr.nbytes > SMALL_FRAME
    _, view = aligned_bytearray(arr.nbytes, offset=1)
    view[:] = arr.tobytes()
    back = frame_to_tensor(view, name, list(t.shape))
    assert back.data_ptr() % size == 0
    assert_bit_exact(t, back)


def elements(name, nbytes):
    return nbytes // DTYPES[name][2]


@pytest.mark.parametrize("name", ["float32", "float64", "int16", "bfloat16", "uint8"])
def test_large_frames_are_zero_copy(name):
    count = elements(name, SMALL_FRAME) + 8
    _, view = aligned_bytearray(count * DTYPES[name][2])
    back = frame_to_tensor(view, name, [count])
    assert bool((back == 0).all())
    assert back.data_ptr() == np.frombuffer(view, dtype=np.uint8).ctypes.data
    one = bits(torch.ones(1, dtype=DTYPES[name][1])).numpy().tobytes()
    view[-len(one):] = one  # the tensor sees writes to the buffer
    assert back[-1].item() == 1 and bool((back[:-1] == 0).all())


@pytest.mark.parametrize("nbytes, shared", [(SMALL_FRAME, False), (SMALL_FRAME + 8, True)])
def test_small_frame_boundary(nbytes, shared):
    _, view = aligned_bytearray(nbytes)
    back = frame_to_tensor(view, "float64", [nbytes // 8])
    assert (back.data_ptr() == np.frombuffer(view, dtype=np.uint8).ctypes.data) == shared


@pytest.mark.parametrize("name", ["float32", "bfloat16"])
def test_large_read_only_frames_are_copied(name):
    """Read-only memory is copied: torch warns about (and may write to) non-writable arrays."""
    data = bytes(range(256)) * (SMALL_FRAME // 256 * 2)
    count = len(data) // DTYPES[name][2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = frame_to_tensor(memoryview(data), name, [count])
    back.add_(1)  # writable without touching `data`
    assert data[:4] == b"\x00\x01\x02\x03"


def test_frame_size_mismatch():
    with pytest.raises(BadMessage, match="needs 16") as ei:
        frame_to_tensor(memoryview(bytes(12)), "float32", [4], "tensors[2]")
    assert ei.value.path == "tensors[2]"
    # measured in bytes, whatever the buffer's item format
    with pytest.raises(BadMessage, match="frame has 8 bytes"):
        frame_to_tensor(memoryview(np.zeros(2, dtype=np.float32)), "float32", [4])


# -- tensor metadata ----------------------------------------------------------------------------

def tmeta(name, frame, dtype="float32", shape=(2,), nbytes=None):
    nbytes = DTYPES[dtype][2] * int(np.prod(shape)) if nbytes is None else nbytes
    return {"name": name, "dtype": dtype, "shape": list(shape), "frame": frame, "nbytes": nbytes}


def test_meta_accepts_a_good_message():
    check_tensor_meta([tmeta("a", 2), tmeta("b", 1, "int8", (3, 0))], 3)
    check_tensor_meta([], 1)


@pytest.mark.parametrize("meta, nframes, path, match", [
    ([tmeta("a", 1), tmeta("b", 3)], 3, "tensors[1].frame", "has 3 frames"),
    ([tmeta("a", 1), tmeta("b", 1)], 3, "tensors[1].frame", "two tensors"),
    ([tmeta("a", 1), tmeta("a", 2)], 3, "tensors[1].name", "twice"),
    ([tmeta("a", 1, "float64", (2, 3), nbytes=24)], 2, "tensors[0].nbytes", "needs 48 bytes"),
    ([tmeta("a", 1, "bfloat16", (5,), nbytes=5)], 2, "tensors[0].nbytes", "needs 10 bytes"),
    ([tmeta("a", 1)], 3, "tensors", "2 tensor frames"),
    ([], 2, "tensors", "1 tensor frames"),
], ids=["frame-beyond", "frame-twice", "name-twice", "nbytes", "nbytes-bf16", "extra-frame", "no-meta"])
def test_meta_errors(meta, nframes, path, match):
    with pytest.raises(BadMessage, match=match) as ei:
        check_tensor_meta(meta, nframes)
    assert ei.value.path == path


def test_decode_checks_meta_before_touching_frames():
    # frame 1 is far too short, but the duplicate name is reported first (meta is checked up front)
    with pytest.raises(BadMessage) as ei:
        decode_tensors([tmeta("a", 1), tmeta("a", 2)], [b"h", b"", b""])
    assert ei.value.path == "tensors[1].name"
    with pytest.raises(BadMessage) as ei:
        decode_tensors([tmeta("a", 1, nbytes=8)], [b"h", bytes(4)])
    assert ei.value.path == "tensors[0]"

