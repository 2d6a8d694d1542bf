"""A request's images decoded side by side on the decode threads: the same tensors as one by one."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from prcl_worker import inputs


def _jpeg(seed):
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)


def test_parallel_decoding_equals_serial_and_keeps_order():
    tensors = {f"img.{i}": _jpeg(i) for i in range(7)}
    before = inputs.decode_threads()
    try:
        inputs.set_decode_threads(1)
        serial = inputs.decode_images(tensors, "img")
        inputs.set_decode_threads(4)
        assert inputs.decode_threads() == 4
        parallel = inputs.decode_images(tensors, "img")
        assert len(parallel) == 7 and all(torch.equal(a, b) for a, b in zip(serial, parallel))
        # a bad file among them is still named
        with pytest.raises(Exception, match="img.3"):
            inputs.decode_images({**tensors, "img.3": torch.zeros(10, dtype=torch.uint8)}, "img")
    finally:
        inputs.set_decode_threads(before)


@pytest.mark.parametrize("bad", [0, -1, 1000, 2.5, True])
def test_decode_threads_are_bounded(bad):
    with pytest.raises(ValueError, match="decode threads"):
        inputs.set_decode_threads(bad)
