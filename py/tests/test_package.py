"""The worker as a pip-installable package (py/pyproject.toml, py/setup.py), as a GPU node gets it.

A copy of py/ (and of schemas/ next to it, the repository layout) is built into a wheel with pip,
the wheel is installed into a fresh virtualenv made with --system-site-packages (so the interpreter's
torch, pyzmq, … serve as the dependencies, and `--no-index` proves the wheel's requirements accept
them), and everything runs from a directory outside the repository with no PYTHONPATH. Building a
copy keeps setuptools' build/ and *.egg-info out of the checkout.

Covers: pyproject's version agrees with package.json and prcl_worker.__version__; the wheel holds
every module of prcl_worker and the JSON Schemas (byte for byte), and neither the tests nor
py/reference; `prcl-worker --help` and `python -m prcl_worker --help`; the installed package reads
its packaged schemas with the same hash as the repository's; the installed `prcl-worker` says hello
to a driver socket with that hash and exits on the shutdown op.

Skipped, with the reason, only where this interpreter cannot build a wheel or make a virtualenv.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import types
import zipfile

import msgpack
import pytest
import zmq

import prcl_worker
from prcl_worker.schemas import REPO_DIR, Schemas

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PY = os.path.join(ROOT, "py")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "build", "dist", "*.egg-info")


def _run(cmd, what, cwd, timeout=300):
    r = subprocess.run(cmd, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{what} exited with {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


def _clean_env():
    """The environment without anything that would let the checkout's prcl_worker be imported."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _cannot_build():
    """Why this interpreter cannot build the wheel offline (None when it can)."""
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        return f"{sys.executable} has no pip (Debian/Ubuntu: apt-get install python3-pip)"
    try:
        import setuptools
    except ImportError:
        return f"{sys.executable} has no setuptools (Debian/Ubuntu: apt-get install python3-setuptools)"
    version = tuple(int(x) for x in re.findall(r"\d+", setuptools.__version__)[:2])
    if version < (61, 0):
        return f"setuptools {setuptools.__version__} is older than 61, which reads pyproject.toml's [project]"
    if version < (70, 1):  # bdist_wheel moved into setuptools in 70.1
        try:
            import wheel  # noqa: F401
        except ImportError:
            return f"{sys.executable} has no wheel package (Debian/Ubuntu: apt-get install python3-wheel)"
    return None


def _venv(path):
    """A virtualenv at `path` that sees this interpreter's packages; None with the reason it cannot."""
    r = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", path], env=_clean_env(),
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        return f"`{sys.executable} -m venv` fails here (Debian/Ubuntu: apt-get install python3-venv): " + (
            r.stderr.strip() or r.stdout.strip())
    if sys.prefix != sys.base_prefix:
        # This interpreter is itself a virtualenv, whose packages --system-site-packages does not
        # reach (it reaches the base interpreter's): add them by a .pth file.
        import site
        purelib = subprocess.run([os.path.join(path, "bin", "python"), "-c",
                                  "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        with open(os.path.join(purelib, "_prcl_test_parent.pth"), "w") as f:
            f.write("\n".join(site.getsitepackages()) + "\n")
    return None


@pytest.fixture(scope="module")
def installed():
    reason = _cannot_build()
    if reason:
        pytest.skip(f"cannot build the prcl-worker wheel: {reason}")
    work = tempfile.mkdtemp(prefix="prcl-wheel-")
    try:
        src = os.path.join(work, "src")
        shutil.copytree(PY, os.path.join(src, "py"), ignore=IGNORE)
        shutil.copytree(REPO_DIR, os.path.join(src, "schemas"), ignore=IGNORE)
        wheels = os.path.join(work, "wheels")
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
              "--no-cache-dir", "-w", wheels, os.path.join(src, "py")], "pip wheel", cwd=work)
        (wheel,) = [os.path.join(wheels, n) for n in os.listdir(wheels) if n.endswith(".whl")]
        venv = os.path.join(work, "venv")
        reason = _venv(venv)
        if reason:
            pytest.skip(f"cannot make a virtualenv to install the wheel into: {reason}")
        python = os.path.join(venv, "bin", "python")
        _run([python, "-m", "pip", "install", "--no-index", "--no-cache-dir", wheel], "pip install <wheel>", cwd=work)
        shutil.rmtree(src)  # nothing of the sources is left to find
        elsewhere = os.path.join(work, "elsewhere")
        os.mkdir(elsewhere)
        yield types.SimpleNamespace(wheel=wheel, python=python, bin=os.path.join(venv, "bin"), venv=venv,
                                    cwd=elsewhere)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_versions_agree():
    with open(os.path.join(PY, "pyproject.toml")) as f:
        (version,) = re.findall(r'^version\s*=\s*"([^"]+)"', f.read(), re.M)
    with open(os.path.join(ROOT, "package.json")) as f:
        assert json.load(f)["version"] == version == prcl_worker.__version__


def test_the_wheel_holds_the_worker_and_the_schemas(installed):
    with zipfile.ZipFile(installed.wheel) as z:
        names = set(z.namelist())
        modules = {n for n in names if n.endswith(".py")}
        expected = set()
        for d, dirs, files in os.walk(os.path.join(PY, "prcl_worker")):
            dirs[:] = [x for x in dirs if x != "__pycache__"]
            expected |= {os.path.relpath(os.path.join(d, f), PY).replace(os.sep, "/")
                         for f in files if f.endswith(".py")}
        assert modules == expected
        schema_names = sorted(n for n in os.listdir(REPO_DIR) if n.endswith(".json"))
        packaged = sorted(n for n in names if n.startswith("prcl_worker/schema_files/"))
        assert packaged == [f"prcl_worker/schema_files/{n}" for n in schema_names]
        for n in schema_names:
            with open(os.path.join(REPO_DIR, n), "rb") as f:
                assert z.read(f"prcl_worker/schema_files/{n}") == f.read(), n
        assert not [n for n in names if n.startswith(("tests/", "reference/", "schemas/"))]
        (dist_info,) = {n.split("/")[0] for n in names if ".dist-info/" in n}
        assert dist_info == f"prcl_worker-{prcl_worker.__version__}.dist-info"
        entry_points = z.read(f"{dist_info}/entry_points.txt").decode()
        assert re.search(r"^prcl-worker = prcl_worker\.__main__:main$", entry_points, re.M)
        requires = {re.split(r"[<>=! ;\[]", line.split(":", 1)[1].strip())[0].lower()
                    for line in z.read(f"{dist_info}/METADATA").decode().splitlines()
                    if line.startswith("Requires-Dist:")}
        assert requires == {"torch", "torchvision", "pyzmq", "msgpack", "numpy", "fastjsonschema", "pillow",
                            "safetensors"}


@pytest.mark.parametrize("how", ["console-script", "module"])
def test_help_runs_outside_the_repository(installed, how):
    cmd = [os.path.join(installed.bin, "prcl-worker")] if how == "console-script" else [
        installed.python, "-m", "prcl_worker"]
    out = _run(cmd + ["--help"], " ".join(cmd) + " --help", cwd=installed.cwd, timeout=60)
    assert out.startswith("usage: prcl-worker") and "--connect" in out


def test_the_installed_package_reads_its_packaged_schemas(installed):
    code = ("import json, prcl_worker, prcl_worker.schemas as s; x = s.Schemas(); "
            "print(json.dumps({'package': prcl_worker.__file__, 'dir': x.directory, 'default': s.DEFAULT_DIR, "
            "'hash': x.hash, 'ops': sorted(x.ops)}))")
    got = json.loads(_run([installed.python, "-c", code], "Schemas()", cwd=installed.cwd, timeout=60))
    package = os.path.dirname(got["package"])
    assert os.path.realpath(package).startswith(os.path.realpath(installed.venv) + os.sep)
    assert os.path.samefile(got["dir"], os.path.join(package, "schema_files"))
    assert os.path.samefile(got["default"], got["dir"])
    repo = Schemas(REPO_DIR)
    assert got["hash"] == repo.hash and got["ops"] == sorted(repo.ops)


def test_the_installed_worker_says_hello_with_the_same_hash(installed):
    d = tempfile.mkdtemp(prefix="prcl-", dir="/tmp")  # ipc paths are limited to ~107 bytes
    endpoint = f"ipc://{d}/w.sock"
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    proc = subprocess.Popen([os.path.join(installed.bin, "prcl-worker"), "--connect", endpoint, "--device", "cpu",
                             "--quiet", "--threads", "1"], cwd=installed.cwd, env=_clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def message(kind, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(max(1, int(left * 1000))):
                raise AssertionError(f"no {kind} from the installed worker within {timeout} s")
            identity, head, *_ = sock.recv_multipart()
            header = msgpack.unpackb(head, raw=False)
            if header["kind"] == kind:
                return identity, header

    try:
        identity, hello = message("hello", 60)
        assert hello["pid"] == proc.pid and hello["schema_hash"] == Schemas(REPO_DIR).hash
        request = {"v": 1, "kind": "req", "id": 1, "op": "shutdown", "instance": hello["instance"], "body": {},
                   "tensors": []}
        sock.send_multipart([identity, msgpack.packb(request)])
        _, reply = message("rep", 30)
        assert reply["id"] == 1 and reply["body"] == {"bye": True}
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close(linger=0)
        ctx.term()
        shutil.rmtree(d, ignore_errors=True)
