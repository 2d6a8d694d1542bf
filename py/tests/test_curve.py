"""The worker's side of CURVE: key files, endpoints that leave the machine, and the command line
that refuses an unkeyed one (the handshakes are tested with a real driver in
test/experiment/remote.test.ts)."""

import os
import subprocess
import sys

import pytest
import zmq.auth

from prcl_worker import curve

PY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_loads_the_driver_key_and_its_own_secret(tmp_path):
    zmq.auth.create_certificates(str(tmp_path), "driver")
    zmq.auth.create_certificates(str(tmp_path), "worker")
    os.chmod(tmp_path / "worker.key_secret", 0o600)
    keys = curve.load(str(tmp_path))
    assert keys.server_key == zmq.auth.load_certificate(str(tmp_path / "driver.key"))[0]
    assert (keys.public_key, keys.secret_key) == zmq.auth.load_certificate(str(tmp_path / "worker.key_secret"))
    os.chmod(tmp_path / "worker.key_secret", 0o644)
    with pytest.raises(ValueError, match="worker.key_secret can be read by other users; chmod 600 it"):
        curve.load(str(tmp_path))
    os.remove(tmp_path / "driver.key")
    with pytest.raises(ValueError, match="driver.key is missing: copy it from the key directory"):
        curve.load(str(tmp_path))


@pytest.mark.parametrize("endpoint,loopback", [
    ("ipc:///tmp/x.sock", True), ("tcp://127.0.0.1:5555", True), ("tcp://localhost:1", True), ("tcp://[::1]:5", True),
    ("tcp://0.0.0.0:5555", False), ("tcp://10.1.2.3:5", False), ("tcp://driver-node:5", False),
])
def test_loopback(endpoint, loopback):
    assert curve.is_loopback(endpoint) is loopback


def test_an_unkeyed_endpoint_off_this_machine_is_refused():
    run = subprocess.run([sys.executable, "-m", "prcl_worker", "--connect", "tcp://10.1.2.3:5555"],
                         env={**os.environ, "PYTHONPATH": PY_DIR}, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "--connect tcp://10.1.2.3:5555 leaves this machine: pass --keys DIR" in run.stderr
    run = subprocess.run([sys.executable, "-m", "prcl_worker", "--connect", "tcp://10.1.2.3:5555",
                          "--keys", "/nonexistent"],
                         env={**os.environ, "PYTHONPATH": PY_DIR}, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "--keys: /nonexistent/driver.key is missing" in run.stderr


def test_exits_when_no_driver_comes():
    run = subprocess.run([sys.executable, "-m", "prcl_worker", "--connect", "tcp://127.0.0.1:9",
                          "--driver-wait-s", "1"],
                         env={**os.environ, "PYTHONPATH": PY_DIR}, capture_output=True, text=True, timeout=120)
    assert run.returncode == 4
    assert "exiting (no driver connected to tcp://127.0.0.1:9 for 1 s)" in run.stderr
