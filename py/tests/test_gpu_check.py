"""bench/gpu_check.py, as bench/gpu-check.sh runs it on a GPU machine, smoke-tested here on the CPU
(--quick: small shapes, few steps), so a lent GPU's minutes are not spent on a crash."""

import json
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def test_gpu_check_runs_every_section_and_writes_one_json(tmp_path):
    out = tmp_path / "gpu-check.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gpu_check.py"), "--quick", "--device", "cpu",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert json.loads(proc.stdout) == result
    assert [r.get("error") for r in result["r101"]] == [None] * 4
    assert all(r["losses_finite"] and r["step_ms_p50"] > 0 for r in result["r101"])
    assert result["demo"]["losses_finite"] and result["demo"]["steps"] == 3
    assert {r["dataset"] for r in result["data"]} == {"voc", "cityscapes"}
    assert all(r["images_per_s"] > 0 and r["decode_ms"] > 0 and r["augment_ms"] > 0 for r in result["data"])
    assert [r["decode_threads"] for r in result["data"] if r["dataset"] == "voc"][0] == 1
