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
