"""Tensor frames <-> torch tensors. Little-endian, C-contiguous, one frame per tensor.

Received tensors are zero-copy views of the ZeroMQ frames except small ones, which libzmq
places at arbitrary byte offsets and which we copy to aligned memory.
"""

import numpy as np
import torch

from .errors import BadMessage

# dtype name -> (numpy dtype or None, torch dtype, itemsize)
DTYPES = {
    "float32": (np.dtype("<f4"), torch.float32, 4),
    "float64": (np.dtype("<f8"), torch.float64, 8),
    "float16": (np.dtype("<f2"), torch.float16, 2),
    "bfloat16": (None, torch.bfloat16, 2),  # numpy has no bfloat16
    "int8": (np.dtype("i1"), torch.int8, 1),
    "int16": (np.dtype("<i2"), torch.int16, 2),
    "int32": (np.dtype("<i4"), torch.int32, 4),
    "int64": (np.dtype("<i8"), torch.int64, 8),
    "uint8": (np.dtype("u1"), torch.uint8, 1),
    "bool": (np.dtype("?"), torch.bool, 1),
}
TORCH_TO_NAME = {t: name for name, (_, t, _) in DTYPES.items()}
SMALL_FRAME = 8192


def _prod(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def check_tensor_meta(meta, nframes):
    """Check tensor metadata against the message before any buffer is touched."""
    seen_frames, seen_names = set(), set()
    for i, m in enumerate(meta):
        path = f"tensors[{i}]"
        if m["frame"] >= nframes:
            raise BadMessage(f"{path}.frame is {m['frame']} but the message has {nframes} frames", path + ".frame")
        if m["frame"] in seen_frames:
            raise BadMessage(f"{path}.frame {m['frame']} is named by two tensors", path + ".frame")
        if m["name"] in seen_names:
            raise BadMessage(f"{path}.name '{m['name']}' appears twice", path + ".name")
        seen_frames.add(m["frame"])
        seen_names.add(m["name"])
        want = _prod(m["shape"]) * DTYPES[m["dtype"]][2]
        if m["nbytes"] != want:
            raise BadMessage(
                f"{path}: shape {m['shape']} of {m['dtype']} needs {want} bytes but nbytes is {m['nbytes']}",
                path + ".nbytes")
    if len(seen_frames) != nframes - 1:
        raise BadMessage(f"message has {nframes - 1} tensor frames but the header names {len(seen_frames)}", "tensors")


def frame_to_tensor(buf, dtype, shape, path="tensor"):
    """A torch tensor over a received buffer (memoryview of a zmq frame)."""
    npdt, tdt, size = DTYPES[dtype]
    nbytes = _prod(shape) * size
    got = memoryview(buf).nbytes  # len() would count items, not bytes, of a buffer with a wider format
    if got != nbytes:
        raise BadMessage(f"{path}: frame has {got} bytes, shape {shape} of {dtype} needs {nbytes}", path)
    if nbytes == 0:
        return torch.empty(shape, dtype=tdt)
    if npdt is None:
        raw = np.frombuffer(buf, dtype=np.uint8)
        if nbytes <= SMALL_FRAME or raw.ctypes.data % size or not raw.flags.writeable:
            raw = raw.copy()  # as below: unaligned, small, or read-only memory is copied
        return torch.from_numpy(raw).view(tdt).reshape(shape)
    arr = np.frombuffer(buf, dtype=npdt)
    if nbytes <= SMALL_FRAME or arr.ctypes.data % size:
        arr = arr.copy()  # small frames sit at arbitrary offsets inside libzmq's buffer
    elif not arr.flags.writeable:
        arr = arr.copy()  # torch.from_numpy warns on read-only memory
    return torch.from_numpy(arr).reshape(shape)


def frame_buffer(frame):
    """The bytes of a zmq.Frame (a zero-copy memoryview) or of any bytes-like object."""
    return frame.buffer if hasattr(frame, "buffer") else memoryview(frame)


def decode_tensors(meta, frames):
    """Named torch tensors of a request; `frames` includes the header at index 0."""
    check_tensor_meta(meta, len(frames))
    return {m["name"]: frame_to_tensor(frame_buffer(frames[m["frame"]]), m["dtype"], m["shape"], f"tensors[{i}]")
            for i, m in enumerate(meta)}


def tensor_to_frame(value, name):
    """(meta without frame index, buffer) for a torch tensor or numpy array; no copy when
    the tensor is already contiguous on the CPU."""
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        if any(s < 0 for s in arr.strides):
            arr = arr.copy()  # numpy calls a[::-1] with len(a) == 1 contiguous; torch refuses negative strides
        value = torch.from_numpy(arr)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"result tensor '{name}' is a {type(value).__name__}, not a tensor")
    t = value.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    dtype = TORCH_TO_NAME.get(t.dtype)
    if dtype is None:
        raise TypeError(f"result tensor '{name}' has dtype {t.dtype}, which the wire does not carry")
    shape = list(t.shape)
    flat = t.reshape(-1)
    if dtype == "bfloat16":
        flat = flat.view(torch.int16)
    arr = flat.numpy()
    return {"name": name, "dtype": dtype, "shape": shape, "nbytes": arr.nbytes}, arr


def encode_tensors(tensors):
    """Header entries and frames for named result tensors."""
    meta, frames = [], []
    for name, value in tensors.items():
        m, arr = tensor_to_frame(value, name)
        frames.append(arr)
        m["frame"] = len(frames)
        meta.append(m)
    return meta, frames
