"""A rank that reads its own files (data.reader rank): train_step's `files` are read under the data
root — configure's, or --data-root's, which wins — into the byte tensors the driver would have
sent; a path that leads outside the root (absolute, `..`, a symlink) or a missing file is refused,
naming the field; files and sent bytes in one request are refused; file_sizes reports -1 for none."""

import os

import pytest
import torch

from prcl_worker import inputs
from prcl_worker.errors import InvalidArgument


@pytest.fixture
def root(tmp_path):
    d = tmp_path / "data"
    (d / "JPEGImages").mkdir(parents=True)
    (d / "JPEGImages" / "a.jpg").write_bytes(b"\xff\xd8abc")
    (tmp_path / "secret.txt").write_bytes(b"outside")
    os.symlink(tmp_path / "secret.txt", d / "JPEGImages" / "link.jpg")
    inputs.set_data_root(str(d))
    yield d
    inputs.set_data_root(None)
    inputs.set_data_root_override(None)


def test_files_are_read_into_the_tensors_the_driver_would_send(root):
    out = inputs.read_files({"files": {"img_l": ["JPEGImages/a.jpg"], "lbl_l": [], "img_u": ["JPEGImages/a.jpg"]}}, {})
    assert set(out) == {"img_l.0", "img_u.0"}
    assert out["img_l.0"].dtype == torch.uint8 and bytes(out["img_l.0"].numpy()) == b"\xff\xd8abc"
    assert inputs.read_files({}, {"x": 1}) == {"x": 1}  # no files: the request as it came


@pytest.mark.parametrize("rel", ["../secret.txt", "JPEGImages/../../secret.txt", "JPEGImages/link.jpg"])
def test_a_path_out_of_the_root_is_refused(root, rel):
    with pytest.raises(InvalidArgument, match=r"files\.img_l\.0: .* leads outside the data root") as e:
        inputs.read_files({"files": {"img_l": [rel], "lbl_l": [], "img_u": []}}, {})
    assert e.value.path == "files.img_l.0"


def test_absolute_missing_and_mixed_requests_are_refused(root, tmp_path):
    with pytest.raises(InvalidArgument, match=r"is not a path relative to the data root"):
        inputs.read_files({"files": {"img_l": [str(tmp_path / "secret.txt")], "lbl_l": [], "img_u": []}}, {})
    with pytest.raises(InvalidArgument, match=r"files\.img_u\.0: JPEGImages/none\.jpg cannot be read under the"):
        inputs.read_files({"files": {"img_l": [], "lbl_l": [], "img_u": ["JPEGImages/none.jpg"]}}, {})
    with pytest.raises(InvalidArgument, match=r"files and encoded tensors \(img_l\.0\) in one request"):
        inputs.read_files({"files": {"img_l": ["JPEGImages/a.jpg"], "lbl_l": [], "img_u": []}},
                          {"img_l.0": torch.zeros(3, dtype=torch.uint8)})


def test_data_root_given_to_the_worker_wins_and_sizes_report_missing_files(root, tmp_path):
    other = tmp_path / "copy"
    (other / "JPEGImages").mkdir(parents=True)
    (other / "JPEGImages" / "a.jpg").write_bytes(b"\xff\xd8abcdef")
    assert inputs.file_sizes(["JPEGImages/a.jpg", "JPEGImages/none.jpg"]) == [5, -1]
    inputs.set_data_root_override(str(other))
    assert inputs.data_root() == os.path.realpath(other)
    assert inputs.file_sizes(["JPEGImages/a.jpg"]) == [8]


def test_without_a_root_files_are_refused():
    inputs.set_data_root(None)
    with pytest.raises(InvalidArgument, match=r"this worker has no data root"):
        inputs.read_files({"files": {"img_l": ["a.jpg"], "lbl_l": [], "img_u": []}}, {})
