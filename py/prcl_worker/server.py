"""The worker's main loop: receive a request, check it, run its op, answer. One op at a time.

Every malformed message is answered with an error naming the problem (or, when it is not even
a request, dropped with a log line); the loop itself never dies on input.
"""

import collections
import os
import platform
import signal
import socket
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import msgpack
import numpy as np
import torch
import zmq

from . import PROTOCOL_VERSION, __version__, distributed
from .codec import decode_tensors, encode_tensors, frame_buffer
from .control import Control
from .errors import (
    BadMessage,
    Cancelled,
    DeadlineExceeded,
    InvalidArgument,
    StaleInstance,
    UnknownOp,
    WireError,
    error_body,
)
from .ops import REGISTRY
from .schemas import Schemas

MAX_HEADER_BYTES = 1 << 20
UINT32_MAX = 0xFFFFFFFF
# The largest frame the worker's sockets accept (ZMQ_MAXMSGSIZE): a peer that sends more is
# disconnected by libzmq before the frame is allocated. One tensor of 2 GiB is far above any batch.
MAX_FRAME_BYTES = 2 << 30
# Heartbeat intervals the worker accepts (and the driver adopts from a hello).
HEARTBEAT_MS_MIN, HEARTBEAT_MS_MAX = 50, 60_000


def _valid_id(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= UINT32_MAX


def peek_id(buf, limit=4096):
    """(id, op) of a msgpack request header read from its first `limit` bytes only, or (None,
    None): how a header too large to decode still gets its error back to the request that sent it
    (the driver packs `id` and `op` before the body)."""
    request_id, op = None, None
    try:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=limit)
        unpacker.feed(bytes(buf[:limit]))
        for _ in range(min(unpacker.read_map_header(), 16)):
            key = unpacker.unpack()
            if key == "id":
                value = unpacker.unpack()
                request_id = value if _valid_id(value) else None
            elif key == "op":
                value = unpacker.unpack()
                op = value[:64] if isinstance(value, str) else None
            else:
                unpacker.skip()
            if request_id is not None and op is not None:
                break
    except Exception:  # noqa: BLE001 - out of data or not msgpack: what was read so far
        pass
    return request_id, op


class Shutdown(BaseException):
    """Raised from the SIGTERM/SIGINT handler to unwind the main loop."""


def _pack_default(value):
    # msgpack cannot pack numpy or torch scalars.
    if isinstance(value, (np.generic, torch.Tensor)) and getattr(value, "ndim", 0) == 0:
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(f"cannot send a {type(value).__name__} in a message body")


def pack(obj):
    return msgpack.packb(obj, default=_pack_default, use_bin_type=True)


def _resolve_device(name):
    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"prcl-worker: device {name} requested but torch {torch.__version__} sees no CUDA device")
    return name


def _rss_mb():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Context:
    """What an op sees of the server."""

    def __init__(self, server):
        self._server = server
        self.state = {}  # what ops keep between requests (the configured trainer)

    @property
    def schemas(self):
        return self._server.schemas

    @property
    def hello(self):
        return self._server.hello

    @property
    def device(self):
        return self._server.device

    def prepared(self, compute):
        """The current request's host-side preparation: computed ahead in the pool when the
        request arrived while another ran, else now."""
        future = self._server.current_prepared
        return future.result() if future is not None else compute()

    def prefetch(self):
        """Pick up requests that arrived meanwhile and start their preparation (ops call this
        between phases so request n+1 decodes while request n computes)."""
        self._server.prefetch()

    def cancelled(self):
        busy = self._server.busy
        return busy is not None and busy[1] in self._server.cancelled_ids

    def stats(self):
        return self._server.stats()

    def request_shutdown(self):
        self._server.stopping = True


class Server:
    def __init__(self, endpoint, instance=None, schemas_dir=None, device="auto", heartbeat_ms=1000,
                 parent_pid=None, quiet=False, spin_us=300, prepare_threads=2, curve=None, driver_wait_s=0):
        self.endpoint = endpoint
        if (isinstance(heartbeat_ms, bool) or not isinstance(heartbeat_ms, int)
                or not HEARTBEAT_MS_MIN <= heartbeat_ms <= HEARTBEAT_MS_MAX):
            raise SystemExit(f"prcl-worker: --heartbeat-ms must be an integer in "
                             f"{HEARTBEAT_MS_MIN}..{HEARTBEAT_MS_MAX}, got {heartbeat_ms!r}")
        self.instance = instance or uuid.uuid4().hex
        self.quiet = quiet
        self.spin_s = spin_us / 1e6
        self.schemas = Schemas(schemas_dir)
        self._check_registry()
        self.device = _resolve_device(device)
        # One rank of a torch.distributed group when the torchrun environment says so: joined
        # here, before the hello that reports it (cuda becomes cuda:LOCAL_RANK).
        try:
            self.device, self.dist = distributed.start(self.device)
        except distributed.DistEnvError as exc:
            raise SystemExit(f"prcl-worker: bad distributed environment: {exc}") from None
        except distributed.DistInitError as exc:
            raise SystemExit(f"prcl-worker: {exc}") from None
        self.heartbeat_ms = heartbeat_ms
        self.counters = {"received": 0, "replied": 0, "errors": 0, "dropped": 0, "prepared_ahead": 0}
        self.by_error = {}
        self.busy = None  # (op, id, epoch ms, monotonic) while an op runs; read by the control thread
        self.pending = collections.deque()  # received, not yet served: [frames, received, future]
        self.current_prepared = None
        self._pool = None
        self.prepare_threads = prepare_threads
        self.cancelled_ids = set()
        self.stopping = False
        self.exit_code = 0
        # A worker started elsewhere outlives a driver that crashed: after this long with no driver
        # connected (none yet, or gone) it exits, so no rank holds its device forever. 0: wait on.
        self.driver_wait_s = driver_wait_s
        self.driver_absent_since = time.monotonic()
        self.started = time.monotonic()
        self.hello = self._hello()
        self.ctx = Context(self)

        self.zctx = zmq.Context()
        self.sock = self.zctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        # Queue only to completed connections, so nothing meant for a gone driver reaches the next.
        self.sock.setsockopt(zmq.IMMEDIATE, 1)
        self.sock.setsockopt(zmq.ROUTING_ID, self.instance.encode())
        self.sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        if curve is not None:
            curve.apply(self.sock)
        self.keyed = curve is not None
        self.monitor = self.sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_DISCONNECTED)
        self.sock.connect(endpoint)
        self.control = Control(self, self.zctx, endpoint, heartbeat_ms, parent_pid, curve)

    def _check_registry(self):
        from .losses import LOSS_OPS
        for name, spec in self.schemas.losses.items():
            if name not in LOSS_OPS or tuple(spec["inputs"]) != LOSS_OPS[name].inputs:
                raise SystemExit(f"prcl-worker: loss op '{name}' in schemas/losses.json does not match the registry; "
                                 "run `prcl schemas` after changing loss ops")
        if set(LOSS_OPS) != set(self.schemas.losses):
            raise SystemExit(f"prcl-worker: loss ops {sorted(set(LOSS_OPS) - set(self.schemas.losses))} have no schema")
        served, declared = set(REGISTRY), set(self.schemas.ops)
        if served != declared:
            raise SystemExit(
                "prcl-worker: the op registry and schemas/ops.json disagree "
                f"(served only: {sorted(served - declared)}, declared only: {sorted(declared - served)}); "
                "run `prcl schemas` after changing ops")

    def _hello(self):
        cuda = torch.version.cuda if torch.cuda.is_available() else None
        if self.device.startswith("cuda"):
            device_name = torch.cuda.get_device_name(torch.device(self.device))
        else:
            cpu = platform.processor() or platform.machine()
            device_name = f"{cpu} ({os.cpu_count()} cpus, {torch.get_num_threads()} torch threads)"
        return {
            "v": PROTOCOL_VERSION, "kind": "hello", "protocol": PROTOCOL_VERSION, "instance": self.instance,
            "worker_version": __version__, "pid": os.getpid(), "host": socket.gethostname(),
            "python": platform.python_version(), "executable": sys.executable,
            "torch": torch.__version__, "cuda": cuda, "device": self.device, "device_name": device_name,
            "numpy": np.__version__, "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(),
            "heartbeat_ms": self.heartbeat_ms, "schema_hash": self.schemas.hash, "ops": self.schemas.ops,
            "model_outputs": list(self.schemas.model_outputs), "batch_tensors": list(self.schemas.batch_tensors),
            "loss_ops": sorted(self.schemas.losses), "dist": self.dist,
        }

    def log(self, message):
        if not self.quiet:
            sys.stderr.write(f"[prcl-worker {os.getpid()}] {message}\n")
            sys.stderr.flush()

    def stats(self):
        cuda_mb = torch.cuda.memory_allocated() / 2**20 if self.device.startswith("cuda") else None
        return {**self.counters, "by_error": dict(self.by_error), "uptime_s": time.monotonic() - self.started,
                "rss_mb": _rss_mb(), "device": self.device, "cuda_allocated_mb": cuda_mb}

    def cancel(self, request_id):
        self.cancelled_ids.add(request_id)
        if len(self.cancelled_ids) > 10000:  # ids of requests that never came; keep the set bounded
            self.cancelled_ids.clear()

    # -- sending -------------------------------------------------------------------------------

    def _send(self, parts, what):
        try:
            self.sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:
            self.log(f"no driver connected; {what} dropped")
            return False

    def _send_error(self, request_id, op, exc):
        body = error_body(exc)
        self.counters["errors"] += 1
        self.by_error[body["type"]] = self.by_error.get(body["type"], 0) + 1
        header = {"v": PROTOCOL_VERSION, "kind": "err", "id": request_id, "instance": self.instance, "error": body}
        if op is not None:
            header["op"] = op
        if request_id is None:
            self.log(f"unreadable message answered with {body['type']}: {body['message']}")
        self._send([pack(header)], f"error reply to request {request_id}")

    # -- receiving -----------------------------------------------------------------------------

    def handle(self, frames, received=None, prepared=None):
        """Answer one message. Never raises on bad input."""
        self.counters["received"] += 1
        received = time.monotonic() if received is None else received
        self.current_prepared = prepared
        if prepared is not None:
            self.counters["prepared_ahead"] += 1
        request_id, op = None, None
        try:
            header = self._read_header(frames[0])
            if isinstance(header, dict):
                rid = header.get("id")
                if _valid_id(rid):
                    request_id = rid
                if isinstance(header.get("op"), str):
                    op = header["op"][:64]
                kind = header.get("kind")
                if kind == "cancel":
                    self.schemas.cancel(header)
                    if header["instance"] == self.instance:
                        self.cancel(header["id"])
                    return
                if kind != "req" and isinstance(kind, str):
                    self.counters["dropped"] += 1
                    self.log(f"ignored a message of unknown kind {kind[:32]!r}")
                    return
            self._serve(header, frames, received)
        except Shutdown:
            raise
        except WireError as exc:
            if request_id is None and getattr(exc, "request_id", None) is not None:
                request_id, op = exc.request_id, exc.op  # a header too large to read: its id, peeked
            self._send_error(request_id, op, exc)
        except Exception as exc:  # noqa: BLE001 - an op's failure becomes the request's error
            self._send_error(request_id, op, exc)
        finally:
            self.busy = None
            self.current_prepared = None
            self.cancelled_ids.discard(request_id)

    def _read_header(self, frame):
        buf = frame_buffer(frame)
        if len(buf) > MAX_HEADER_BYTES:
            exc = BadMessage(f"header of {len(buf)} bytes exceeds {MAX_HEADER_BYTES}; send large data as tensors")
            exc.request_id, exc.op = peek_id(buf)
            raise exc
        try:
            return msgpack.unpackb(buf, raw=False, strict_map_key=False)
        except Exception as exc:  # noqa: BLE001 - any undecodable header is the sender's error
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise BadMessage(f"header is not valid msgpack ({detail})") from None

    def _serve(self, header, frames, received):
        if not isinstance(header, dict):
            raise BadMessage(f"header must be a map, got {type(header).__name__}")
        if header.get("v") != PROTOCOL_VERSION and isinstance(header.get("v"), int):
            raise BadMessage(f"protocol v{header.get('v')} is not spoken here (v{PROTOCOL_VERSION})", "v")
        self.schemas.request(header)
        rid, name = header["id"], header["op"]
        if header["instance"] != self.instance:
            raise StaleInstance(f"request for instance {header['instance']} reached instance {self.instance}",
                                "instance")
        op = REGISTRY.get(name)
        if op is None:
            raise UnknownOp(f"unknown op '{name}'; this worker serves {', '.join(sorted(REGISTRY))}", "op")
        if op.tensors == "none" and (header["tensors"] or len(frames) > 1):
            raise InvalidArgument(f"op '{name}' takes no tensors, got {max(len(header['tensors']), len(frames) - 1)}",
                                  "tensors")
        deadline = header.get("deadline_ms")
        if deadline is not None and deadline <= 0:
            raise DeadlineExceeded(f"request {rid} arrived {-deadline:.0f} ms past its deadline", "deadline_ms")
        if rid in self.cancelled_ids:
            self.cancelled_ids.discard(rid)
            raise Cancelled(f"request {rid} was cancelled before it started")
        self.schemas.args[name](header["body"])
        tensors = decode_tensors(header["tensors"], frames)

        started = time.monotonic()
        self.busy = (name, rid, time.time() * 1000.0, started)
        result = op.fn(self.ctx, header["body"], tensors)
        self.busy = None
        body, out = result if isinstance(result, tuple) else (result, {})
        self.schemas.results[name](body)
        meta, out_frames = encode_tensors(out)
        done = time.monotonic()
        reply = {"v": PROTOCOL_VERSION, "kind": "rep", "id": rid, "op": name, "instance": self.instance,
                 "body": body, "tensors": meta,
                 "timing": {"queued_ms": (started - received) * 1000.0, "run_ms": (done - started) * 1000.0}}
        if self._send([pack(reply), *out_frames], f"reply to request {rid}"):
            self.counters["replied"] += 1

    # -- reading ahead -------------------------------------------------------------------------

    def prefetch(self):
        """Move what has arrived into `pending`, starting the preparation of requests whose op
        has one. Checks here only decide whether to prepare; errors are reported when served."""
        while True:
            try:
                frames = self.sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            entry = [frames, time.monotonic(), None]
            try:
                header = self._read_header(frames[0])
                is_request = isinstance(header, dict) and header.get("kind") == "req"
                op = REGISTRY.get(header.get("op")) if is_request else None
                if op is not None and op.prepare is not None and header.get("instance") == self.instance:
                    self.schemas.request(header)
                    self.schemas.args[op.name](header["body"])
                    tensors = decode_tensors(header["tensors"], frames)
                    if self._pool is None:
                        self._pool = ThreadPoolExecutor(self.prepare_threads, thread_name_prefix="prcl-prepare")
                    entry[2] = self._pool.submit(op.prepare, header["body"], tensors)
            except Exception:  # noqa: BLE001 - served (and answered) in order later
                pass
            self.pending.append(entry)

    # -- the loop ------------------------------------------------------------------------------

    def _on_monitor(self):
        from zmq.utils.monitor import recv_monitor_message
        event = recv_monitor_message(self.monitor)
        if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            # A driver (new or returning) is connected: introduce ourselves.
            self.driver_absent_since = None
            self._send([pack(self.hello)], "hello")
        elif event["event"] == zmq.EVENT_DISCONNECTED:
            if self.driver_absent_since is None:
                self.driver_absent_since = time.monotonic()
        elif event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            # The driver's ZAP handler refused our key: retrying cannot help.
            self.log(f"the driver at {self.endpoint} refused this worker's CURVE key: "
                     "start it with --keys holding the worker.key_secret of the driver's key directory")
            self.exit_code = 3
            raise Shutdown("refused by the driver")
        else:
            self.log(f"handshake with {self.endpoint} failed ({'CURVE' if self.keyed else 'no keys'} here): "
                     "the driver may expect keys, or other keys; retrying")

    def run(self):
        def on_signal(signum, frame):
            raise Shutdown(signal.Signals(signum).name)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.control.start()
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        where = "" if self.dist is None else f" (rank {self.dist['rank']} of {self.dist['world_size']})"
        self.log(f"instance {self.instance} on {self.device}{where}, connecting to {self.endpoint}")
        reason = "shutdown op"
        try:
            spin_until = 0.0
            while not self.stopping:
                if self.pending:
                    frames, received, prepared = self.pending.popleft()
                    # Read ahead before serving, so the next request prepares while this one runs.
                    self.prefetch()
                    self.handle(frames, received, prepared)
                    # Poll briefly before sleeping in the kernel: a driver that answers at
                    # once (a request loop) saves a thread wake-up (~50 us on 2 cores).
                    spin_until = time.perf_counter() + self.spin_s
                    continue
                self.prefetch()
                if self.pending or time.perf_counter() < spin_until:
                    continue
                events = dict(poller.poll(250))
                if self.monitor in events:
                    self._on_monitor()
                absent = self.driver_absent_since
                if self.driver_wait_s and absent is not None and time.monotonic() - absent > self.driver_wait_s:
                    self.exit_code = 4
                    raise Shutdown(f"no driver connected to {self.endpoint} for {self.driver_wait_s:g} s")
        except Shutdown as exc:
            reason = str(exc)
        finally:
            self.control.stop()
            self.control.join(timeout=2)
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            self.sock.disable_monitor()
            self.monitor.close(linger=0)
            self.sock.close(linger=0)
            self.zctx.term()
            distributed.stop()
            self.log(f"exiting ({reason})")
        return self.exit_code
