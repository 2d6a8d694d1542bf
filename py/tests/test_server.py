"""prcl_worker.server end to end: a real Server and its control thread against a real ZeroMQ ROUTER
(the driver's side) on an ipc:// endpoint.

The in-process worker runs the real `Server.run()` on a background thread; only its signal
handler installation is replaced (signal.signal works on the main thread only). Two tests start
`python -m prcl_worker` as a subprocess to cover the command line, the shutdown op and SIGTERM.

Covers: hello, heartbeats (seq, busy_op/busy_id while an op runs), bit-exact echo of float32 and
bfloat16 tensors, cooperative cancel through the control socket, errors for unreadable headers
and bad requests (with ids and paths), the stats counters, tracebacks of failing ops, shutdown.
Every header received is checked against the generated JSON Schema of its kind.
"""

import collections
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types

import jsonschema
import msgpack
import numpy as np
import pytest
import torch
import zmq

from prcl_worker import server as server_mod
from prcl_worker.schemas import Schemas

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HEARTBEAT_MS = 200


def _schema(name):
    with open(os.path.join(ROOT, "schemas", name)) as f:
        return jsonschema.Draft7Validator(json.load(f))


SCHEMA_OF_KIND = {"hello": _schema("hello.json"), "hb": _schema("heartbeat.json"), "rep": _schema("reply.json"),
                  "err": _schema("error.json")}


class Router:
    """The driver's end: a bound ROUTER. Heartbeats (from `<instance>/ctl`) are kept apart from
    everything else (from `<instance>`), so tests can wait for either."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to an unknown peer raises, not vanishes
        self.sock.bind(endpoint)
        self.beats = collections.deque()
        self.others = collections.deque()
        self.next_id = 100

    def close(self):
        self.sock.close(linger=0)
        self.ctx.term()

    def _pump(self, deadline):
        """Receive one message into the queues; False on timeout."""
        left = deadline - time.monotonic()
        if left <= 0 or not self.sock.poll(max(1, int(left * 1000))):
            return False
        identity, head, *frames = self.sock.recv_multipart()
        header = msgpack.unpackb(head, raw=False)
        SCHEMA_OF_KIND[header["kind"]].validate(header)
        msg = types.SimpleNamespace(identity=identity.decode(), header=header, frames=frames, at=time.monotonic())
        (self.beats if header["kind"] == "hb" else self.others).append(msg)
        return True

    def message(self, timeout=5.0):
        """The next message that is not a heartbeat."""
        deadline = time.monotonic() + timeout
        while not self.others:
            if not self._pump(deadline):
                raise AssertionError(f"no message within {timeout} s")
        return self.others.popleft()

    def beat(self, timeout=3.0, where=lambda hb: True):
        """The next heartbeat satisfying `where` (earlier ones are discarded)."""
        deadline = time.monotonic() + timeout
        while True:
            while self.beats:
                msg = self.beats.popleft()
                if where(msg.header):
                    return msg
            if not self._pump(deadline):
                raise AssertionError(f"no matching heartbeat within {timeout} s")

    def send(self, identity, header, *frames):
        parts = [identity.encode(), header if isinstance(header, bytes) else msgpack.packb(header)]
        self.sock.send_multipart(parts + list(frames))

    def request(self, instance, op, body=None, tensors=(), frames=(), to=None, **extra):
        """Send a request for `instance` (to that worker unless `to` names another); returns its id."""
        rid = self.next_id
        self.next_id += 1
        header = {"v": 1, "kind": "req", "id": rid, "op": op, "instance": instance, "body": body or {},
                  "tensors": list(tensors), **extra}
        self.send(to or instance, header, *frames)
        return rid

    def call(self, instance, op, body=None, **kw):
        rid = self.request(instance, op, body, **kw)
        msg = self.message()
        assert msg.identity == instance
        assert msg.header["id"] == rid
        return msg


@pytest.fixture
def endpoint():
    d = tempfile.mkdtemp(prefix="prcl-", dir="/tmp")  # ipc paths are limited to ~107 bytes
    yield f"ipc://{d}/w.sock"
    shutil.rmtree(d, ignore_errors=True)


class Worker:
    """A real Server running `run()` on a background thread."""

    def __init__(self, endpoint, monkeypatch):
        # run() installs SIGTERM/SIGINT handlers, which Python allows on the main thread only.
        monkeypatch.setattr(server_mod, "signal", types.SimpleNamespace(
            signal=lambda *a: None, SIGTERM=signal.SIGTERM, SIGINT=signal.SIGINT, Signals=signal.Signals))
        self.server = server_mod.Server(endpoint, device="cpu", quiet=True, heartbeat_ms=HEARTBEAT_MS)
        self.instance = self.server.instance
        self.ctl = self.instance + "/ctl"
        self.errors = []
        self.thread = threading.Thread(target=self._run, name="prcl-test-server", daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.server.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the fixture
            self.errors.append(exc)
            raise

    def stop(self):
        self.server.stopping = True
        self.thread.join(timeout=5)
        assert not self.thread.is_alive(), "the server loop did not end"


@pytest.fixture
def router(endpoint):
    r = Router(endpoint)
    yield r
    r.close()


@pytest.fixture
def worker(endpoint, router, monkeypatch):
    """A running worker that has said hello; `worker.hello` is that message."""
    w = Worker(endpoint, monkeypatch)
    try:
        w.hello = router.message(timeout=5)
        yield w
    finally:
        w.stop()
    assert not w.errors


# -- tests --------------------------------------------------------------------------------------

def test_hello(worker):
    msg = worker.hello
    h = msg.header
    assert msg.identity == worker.instance
    assert h["kind"] == "hello" and h["v"] == 1 and h["protocol"] == 1
    assert h["instance"] == worker.instance
    assert h["schema_hash"] == Schemas().hash
    with open(os.path.join(ROOT, "schemas", "ops.json")) as f:
        assert h["ops"] == json.load(f)["ops"]
    assert h["device"] == "cpu" and h["cuda"] in (None, torch.version.cuda)
    assert h["heartbeat_ms"] == HEARTBEAT_MS
    assert h["pid"] == os.getpid() and h["torch"] == torch.__version__
    assert msg.frames == []


def test_hello_op_returns_the_hello(worker, router):
    rep = router.call(worker.instance, "hello")
    assert rep.header["kind"] == "rep" and rep.header["body"] == worker.hello.header


def test_heartbeats(worker, router):
    beats = [router.beat().header for _ in range(3)]
    seqs = [b["seq"] for b in beats]
    assert seqs == list(range(seqs[0], seqs[0] + 3)), seqs
    for b in beats:
        assert b["instance"] == worker.instance
        assert b["busy_op"] is None and b["busy_id"] is None and b["busy_for_ms"] is None
    msg = router.beat()
    assert msg.identity == worker.ctl
    served = msg.header["served"]
    router.call(worker.instance, "ping")
    assert router.beat(where=lambda hb: hb["served"] == served + 1)


def f32_specials():
    return torch.tensor([0.0, -0.0, float("nan"), float("inf"), float("-inf"), 1e-45, -3.5], dtype=torch.float32)


def test_echo_is_bit_exact(worker, router):
    bf16 = torch.arange(-2**15, 2**15, dtype=torch.int32).to(torch.int16).view(torch.bfloat16).reshape(256, 256)
    f32 = torch.randn(70, 65, generator=torch.Generator().manual_seed(1))  # 18200 bytes: the zero-copy path
    f32[0, :7] = f32_specials()
    small = f32_specials()  # 28 bytes: the copied path
    sent = {"f": (f32, "float32", f32.numpy().tobytes()),
            "b": (bf16, "bfloat16", bf16.view(torch.int16).numpy().tobytes()),
            "s": (small, "float32", small.numpy().tobytes())}
    meta = [{"name": n, "dtype": dt, "shape": list(t.shape), "frame": i + 1, "nbytes": len(raw)}
            for i, (n, (t, dt, raw)) in enumerate(sent.items())]
    rep = router.call(worker.instance, "echo", tensors=meta, frames=[raw for _, _, raw in sent.values()])
    h = rep.header
    assert h["kind"] == "rep" and h["op"] == "echo" and h["body"] == {"names": ["f", "b", "s"]}
    assert set(h["timing"]) == {"queued_ms", "run_ms"} and h["timing"]["run_ms"] >= 0
    assert len(rep.frames) == 3
    for m in h["tensors"]:
        t, dt, raw = sent[m["name"]]
        assert m["dtype"] == dt and m["shape"] == list(t.shape) and m["nbytes"] == len(raw)
        assert rep.frames[m["frame"] - 1] == raw, m["name"]


def test_upload_sizes(worker, router):
    raw = np.arange(10, dtype="<i8").tobytes()
    rep = router.call(worker.instance, "upload", frames=[raw, b"\x01\x00"],
                      tensors=[{"name": "a", "dtype": "int64", "shape": [2, 5], "frame": 1, "nbytes": 80},
                               {"name": "b", "dtype": "bool", "shape": [2], "frame": 2, "nbytes": 2}])
    assert rep.header["body"] == {"count": 2, "nbytes": 82} and rep.frames == []


def test_cancel_through_the_control_socket(worker, router):
    t0 = time.monotonic()
    rid = router.request(worker.instance, "sleep", {"ms": 5000})
    busy = router.beat(where=lambda hb: hb["busy_op"] is not None).header
    assert busy["busy_op"] == "sleep" and busy["busy_id"] == rid
    assert busy["busy_for_ms"] >= 0 and busy["busy_since"] > 0
    router.send(worker.ctl, {"v": 1, "kind": "cancel", "id": rid, "instance": worker.instance})
    msg = router.message(timeout=4)
    elapsed = time.monotonic() - t0
    e = msg.header
    assert e["kind"] == "err" and e["id"] == rid and e["op"] == "sleep"
    assert e["error"]["type"] == "Cancelled" and e["error"]["retryable"] is False
    assert elapsed < 3.0, f"the cancelled sleep took {elapsed:.1f} s"
    # the worker is free again
    assert router.call(worker.instance, "ping").header["body"] == {"pong": True}
    assert router.beat(where=lambda hb: hb["seq"] > busy["seq"] + 1)


def test_cancel_for_another_instance_is_ignored(worker, router):
    rid = router.request(worker.instance, "sleep", {"ms": 3 * HEARTBEAT_MS})
    router.beat(where=lambda hb: hb["busy_id"] == rid)
    router.send(worker.ctl, {"v": 1, "kind": "cancel", "id": rid, "instance": "someone-else"})
    router.send(worker.ctl, b"\xc1")  # junk on the control socket is dropped, never fatal
    rep = router.message()
    assert rep.header["kind"] == "rep" and rep.header["id"] == rid and rep.header["body"]["slept_ms"] >= 500


def test_unreadable_header_and_stats(worker, router):
    router.send(worker.instance, b"\xc1")  # never valid msgpack
    e = router.message().header
    assert e["kind"] == "err" and e["id"] is None and "op" not in e
    assert e["error"]["type"] == "BadMessage" and "msgpack" in e["error"]["message"]

    router.send(worker.instance, msgpack.packb([1, 2, 3]))
    e = router.message().header
    assert e["id"] is None and e["error"]["type"] == "BadMessage" and "map" in e["error"]["message"]

    router.send(worker.instance, {"v": 1, "kind": "gossip", "id": 5})  # unknown kind: dropped, no answer
    assert router.call(worker.instance, "ping", {"payload": [1, "two"]}).header["body"] == {
        "pong": True, "payload": [1, "two"]}

    stats = router.call(worker.instance, "stats").header["body"]
    # received: the two bad headers, the gossip, the ping and this stats call; replied: the ping
    assert {k: stats[k] for k in ("received", "replied", "errors", "dropped")} == {
        "received": 5, "replied": 1, "errors": 2, "dropped": 1}
    assert stats["by_error"] == {"BadMessage": 2}
    assert stats["device"] == "cpu" and stats["cuda_allocated_mb"] is None
    assert stats["uptime_s"] > 0 and stats["rss_mb"] > 0


def test_request_errors_name_the_problem(worker, router):
    inst = worker.instance
    cases = [
        (dict(op="nope"), "UnknownOp", "op"),
        (dict(op="ping", instance="0ld"), "StaleInstance", "instance"),
        (dict(op="sleep", body={"ms": "x"}), "InvalidArgument", "body.ms"),
        (dict(op="sleep", body={"ms": 1}, deadline_ms=-5), "DeadlineExceeded", "deadline_ms"),
        (dict(op="ping", frames=[b"x"], tensors=[{"name": "a", "dtype": "uint8", "shape": [1], "frame": 1,
                                                  "nbytes": 1}]), "InvalidArgument", "tensors"),
        (dict(op="echo", frames=[b"xyz"], tensors=[{"name": "a", "dtype": "int16", "shape": [2], "frame": 1,
                                                    "nbytes": 3}]), "BadMessage", "tensors[0].nbytes"),
        (dict(op="echo", frames=[b"abcd", b"extra"], tensors=[{"name": "a", "dtype": "int16", "shape": [2],
                                                                "frame": 1, "nbytes": 4}]), "BadMessage", "tensors"),
        (dict(op="echo", tensors=[{"name": "a", "dtype": "complex64", "shape": [], "frame": 1, "nbytes": 8}],
              frames=[bytes(8)]), "BadMessage", "tensors[0].dtype"),
        (dict(op="ping", v=2), "BadMessage", "v"),
    ]
    for spec, etype, path in cases:
        spec = dict(spec)
        rid = router.request(spec.pop("instance", inst), spec.pop("op"), spec.pop("body", None), to=inst, **spec)
        e = router.message().header
        assert (e["kind"], e["id"], e["error"]["type"], e["error"].get("path")) == ("err", rid, etype, path), spec
    assert router.call(inst, "ping").header["kind"] == "rep"  # none of that hurt


@pytest.mark.parametrize("etype, message", [("ValueError", "boom"), ("ZeroDivisionError", "nope")])
def test_fail_sends_the_traceback(worker, router, etype, message):
    e = router.call(worker.instance, "fail", {"type": etype, "message": message}).header
    err = e["error"]
    assert e["kind"] == "err" and e["op"] == "fail"
    assert err["type"] == etype and err["message"] == message and err["retryable"] is False
    assert all(isinstance(line, str) for line in err["traceback"])
    assert any("raise_it" in line for line in err["traceback"])
    assert err["traceback"][-1].startswith(etype)


def test_shutdown(worker, router):
    rep = router.call(worker.instance, "shutdown")
    assert rep.header["kind"] == "rep" and rep.header["body"] == {"bye": True}
    worker.thread.join(timeout=3)
    assert not worker.thread.is_alive()
    assert worker.server.sock.closed and worker.server.zctx.closed
    assert not worker.server.control.is_alive()


# -- as a process -------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["shutdown-op", "sigterm"])
def test_worker_process_exits_cleanly(endpoint, router, how):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "py"))
    proc = subprocess.Popen([sys.executable, "-m", "prcl_worker", "--connect", endpoint, "--device", "cpu",
                             "--quiet", "--heartbeat-ms", str(HEARTBEAT_MS)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        hello = router.message(timeout=30).header
        assert hello["kind"] == "hello" and hello["pid"] == proc.pid and hello["schema_hash"] == Schemas().hash
        if how == "shutdown-op":
            assert router.call(hello["instance"], "shutdown").header["body"] == {"bye": True}
        else:
            router.beat()  # running its loop
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err.decode()
        assert out == b"" and b"[prcl-worker" not in err  # --quiet: no log lines of its own
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- trust boundaries (issue 10 item 8) ---------------------------------------------------------

@pytest.mark.parametrize("bad", [1, 49, 60_001, 0, -5])
def test_a_heartbeat_interval_out_of_range_refuses_to_start(endpoint, bad):
    with pytest.raises(SystemExit, match="heartbeat-ms must be an integer in 50..60000"):
        server_mod.Server(endpoint, device="cpu", quiet=True, heartbeat_ms=bad)


def test_the_worker_command_refuses_a_heartbeat_of_1(endpoint):
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "py")}
    proc = subprocess.run([sys.executable, "-m", "prcl_worker", "--connect", endpoint, "--device", "cpu",
                           "--quiet", "--heartbeat-ms", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "heartbeat-ms must be an integer in 50..60000" in proc.stderr


def test_the_sockets_bound_the_frame_size(worker):
    assert worker.server.sock.getsockopt(zmq.MAXMSGSIZE) == server_mod.MAX_FRAME_BYTES
    assert worker.server.control.sock.getsockopt(zmq.MAXMSGSIZE) == 1 << 16


def test_an_oversized_header_gets_its_error_back_with_its_id(worker, router):
    started = time.monotonic()
    rid = router.request(worker.instance, "ping", {"payload": "x" * (server_mod.MAX_HEADER_BYTES + 10)})
    msg = router.message(timeout=5)
    assert msg.header["kind"] == "err" and msg.header["id"] == rid and msg.header["op"] == "ping"
    assert msg.header["error"]["type"] == "BadMessage"
    assert "exceeds" in msg.header["error"]["message"]
    assert time.monotonic() - started < 3
    assert router.call(worker.instance, "ping", {"payload": 1}).header["body"]["payload"] == 1


def test_peek_id_reads_only_the_first_bytes():
    head = msgpack.packb({"v": 1, "kind": "req", "id": 77, "op": "ping", "instance": "a", "body": {"p": "x" * 10**6}})
    assert server_mod.peek_id(head) == (77, "ping")
    assert server_mod.peek_id(b"\xc1garbage") == (None, None)
    assert server_mod.peek_id(msgpack.packb({"body": "x" * 10**5, "id": 3})) == (None, None)  # id past the prefix


def test_request_sizes_are_bounded_by_the_schema():
    from prcl_worker.errors import WireError
    schemas = Schemas()
    window = {"model": "teacher", "mode": "sliding", "window": [100_000, 100_000], "stride": [8, 8]}
    with pytest.raises(WireError, match="window"):
        schemas.args["eval_step"](window)
    with pytest.raises(WireError, match="stride"):
        schemas.args["eval_step"]({**window, "window": [64, 64], "stride": [1 << 20, 8]})
    schemas.args["eval_step"]({**window, "window": [64, 64]})
    crop = {"rescale": {"scale": 1.0, "top": 0, "left": 0, "crop_h": 1 << 20, "crop_w": 64}}
    far = {"rescale": {**crop["rescale"], "crop_h": 64, "top": 1 << 30}}
    for field, aug in [("crop_h", crop), ("blur", {"blur": {"sigma": 1e9}}), ("top", far)]:
        with pytest.raises(WireError, match=field):
            schemas.args["train_step"]({"step": 0, "lr": 0.1, "head_lr": 0.1, "ema": {"decay": 0.9, "buffers": "ema"},
                                        "weights": {}, "params": {}, "policy": POLICY, "labeled_aug": [aug]})
    with pytest.raises(WireError, match="path"):
        schemas.args["save"]({"path": "x" * 5000})


POLICY = {"weak_threshold": 0.7, "teacher_bn": "train", "mix": "none", "mix_partner": "local_next",
          "classmix_ignore_is_class": False, "conf_quantization": "none"}


def _png_claiming(width, height):
    """A valid 1x1 PNG whose header claims width x height (a decompression bomb's header)."""
    import io
    import struct
    import zlib

    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8  # signature, then the IHDR chunk: length(4) type(4) data(13) crc(4)
    data[ihdr + 8:ihdr + 16] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4:ihdr + 21])) & 0xFFFFFFFF
    data[ihdr + 21:ihdr + 25] = struct.pack(">I", crc)
    return bytes(data)


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (20_000, 10), (9000, 9000)])
def test_a_png_bomb_is_refused_before_decoding(width, height):
    from prcl_worker.augment.decode import decode_image, decode_label
    bomb = _png_claiming(width, height)
    assert len(bomb) < 200
    started = time.monotonic()
    with pytest.raises(ValueError, match="refused before decoding"):
        decode_image(torch.frombuffer(bytearray(bomb), dtype=torch.uint8))
    with pytest.raises(ValueError, match="refused before decoding"):
        decode_label(bomb)
    assert time.monotonic() - started < 1


def _tiny_settings(paths=None, pretrained=None):
    from test_train import settings
    cfg = settings()
    if pretrained is not None:
        with open(pretrained, "rb") as f:
            pretrained = {"path": pretrained, "sha256": hashlib.sha256(f.read()).hexdigest(), "trusted": True}
    cfg["model"]["pretrained"] = pretrained
    if paths is not None:
        cfg["paths"] = paths
    return cfg


def test_save_and_load_only_inside_the_directories_named_at_configure(tmp_path):
    from worker_calls import SCHEMAS, call

    from prcl_worker.errors import WireError
    from prcl_worker.replay import ReplayContext
    run, other = tmp_path / "run", tmp_path / "other"
    run.mkdir()
    other.mkdir()
    ctx = ReplayContext("cpu", SCHEMAS)
    for op in ("save", "load"):  # before configure: nothing
        with pytest.raises(WireError, match="not configured"):
            call(ctx, op, {"path": str(run / "a.pt")})
    call(ctx, "configure", _tiny_settings({"write": [str(run)], "read": []}))
    assert call(ctx, "save", {"path": str(run / "a.pt")})["bytes"] > 0
    assert call(ctx, "load", {"path": str(run / "a.pt")})["step"] is None
    (run / "ck").mkdir()
    call(ctx, "save", {"path": str(run / "ck" / "b.pt")})
    refused = [str(other / "a.pt"), str(run / ".." / "other" / "a.pt"), "/etc/passwd", "relative.pt"]
    os.symlink(other, run / "escape")
    refused.append(str(run / "escape" / "a.pt"))
    for path in refused:
        with pytest.raises(WireError, match="outside the directories the driver allowed for writing") as info:
            call(ctx, "save", {"path": path})
        assert info.value.type == "PathRefused" and info.value.path == "path"
    assert not (other / "a.pt").exists()
    shutil.copy(run / "a.pt", other / "a.pt")
    with pytest.raises(WireError, match="allowed for reading"):
        call(ctx, "load", {"path": str(run / "escape" / "a.pt")})
    # reset forgets the directories with the model
    call(ctx, "reset", {})
    with pytest.raises(WireError, match="not configured"):
        call(ctx, "save", {"path": str(run / "a.pt")})


def test_pretrained_weights_only_from_a_readable_directory(tmp_path):
    from worker_calls import SCHEMAS, call

    from prcl_worker.errors import WireError
    from prcl_worker.replay import ReplayContext
    run, weights = tmp_path / "run", tmp_path / "weights"
    run.mkdir()
    weights.mkdir()
    (weights / "r18.pth").write_bytes(b"junk")
    ctx = ReplayContext("cpu", SCHEMAS)
    with pytest.raises(WireError, match="model.pretrained: .* outside"):
        call(ctx, "configure", _tiny_settings({"write": [str(run)], "read": []}, str(weights / "r18.pth")))
    assert "trainer" not in ctx.state and "paths" not in ctx.state
    # readable: gets as far as reading the file (junk)
    with pytest.raises(ValueError, match="r18.pth"):
        call(ctx, "configure", _tiny_settings({"write": [str(run)], "read": [str(weights)]}, str(weights / "r18.pth")))


def test_a_torchscript_archive_is_refused_before_torch_load(tmp_path, monkeypatch):
    from prcl_worker import state as state_mod
    from prcl_worker.model.weights import read_state_dict

    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    path = tmp_path / "payload.pt"
    torch.jit.save(scripted, str(path))
    calls = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(a) or {})
    with pytest.raises(ValueError, match="TorchScript archive"):
        state_mod.safe_torch_load(str(path))
    with pytest.raises(ValueError, match="TorchScript archive"):
        read_state_dict(str(path))
    assert calls == []
    # the worker's own checkpoints and plain state dicts are not archives of that kind
    monkeypatch.undo()
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(2)}, str(plain))
    assert torch.equal(state_mod.safe_torch_load(str(plain))["w"], torch.ones(2))


def test_a_pickle_that_runs_code_is_not_loaded(tmp_path):
    from prcl_worker import state as state_mod
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, str(path))
    with pytest.raises(Exception):  # noqa: B017 - torch's unpickler error type varies by version
        state_mod.safe_torch_load(str(path))
    assert not marker.exists()


def test_a_rescale_that_would_allocate_gigapixels_is_refused():
    from prcl_worker.augment.geometry import crop_params_valid, rescale_pad_crop
    assert crop_params_valid(8000, 8000, scale=16, top=0, left=0, crop_h=64, crop_w=64).startswith(
        "scale 16.0 grows the 8000x8000 image to 128000x128000, over the worker's limit")
    assert crop_params_valid(1024, 2048, scale=2.0, top=0, left=0, crop_h=512, crop_w=512) is None
    with pytest.raises(ValueError, match="over the worker's limit"):
        rescale_pad_crop(torch.zeros(3, 1024, 1024), scale=16, top=0, left=0, crop_h=8, crop_w=8)
