"""The control thread: heartbeats, cancellation, and exiting when the driver process is gone or
asks it to (`abort`: the main thread may be stuck in a collective waiting for a dead rank).

It owns a second DEALER (routing id `<instance>/ctl`) so beats and cancels never queue behind
a running op; ZeroMQ sockets are not thread-safe, so the main socket stays with the main thread.
"""

import os
import threading
import time

import msgpack
import zmq

from . import PROTOCOL_VERSION
from .errors import WireError


class Control(threading.Thread):
    def __init__(self, server, zctx, endpoint, interval_ms, parent_pid, curve=None):
        super().__init__(name="prcl-control", daemon=True)
        self.server = server
        self.interval = interval_ms / 1000.0
        self.parent_pid = parent_pid
        self.stop_event = threading.Event()
        self.sock = zctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.IMMEDIATE, 1)
        self.sock.setsockopt(zmq.ROUTING_ID, (server.instance + "/ctl").encode())
        self.sock.setsockopt(zmq.MAXMSGSIZE, 1 << 16)  # cancels and aborts are a few hundred bytes
        if curve is not None:
            curve.apply(self.sock)
        self.sock.connect(endpoint)
        self.seq = 0

    def run(self):
        next_beat = time.monotonic()
        try:
            while not self.stop_event.is_set():
                timeout = max(0.0, next_beat - time.monotonic())
                if self.sock.poll(int(timeout * 1000) + 1):
                    self._on_message(self.sock.recv_multipart())
                if time.monotonic() >= next_beat:
                    self._beat()
                    next_beat = time.monotonic() + self.interval
                    self._check_parent()
        finally:
            self.sock.close(linger=0)

    def _beat(self):
        busy = self.server.busy
        now = time.time() * 1000.0
        hb = {
            "v": PROTOCOL_VERSION, "kind": "hb", "instance": self.server.instance, "seq": self.seq,
            "busy_op": busy[0] if busy else None, "busy_id": busy[1] if busy else None,
            "busy_since": busy[2] if busy else None,
            "busy_for_ms": (now - busy[2]) if busy else None,
            "served": self.server.counters["replied"],
        }
        self.seq += 1
        try:
            self.sock.send(msgpack.packb(hb), zmq.NOBLOCK)
        except zmq.Again:
            pass  # no driver connected: beats are not queued for a later one

    def _on_message(self, frames):
        try:
            header = msgpack.unpackb(frames[0], raw=False)
            abort = isinstance(header, dict) and header.get("kind") == "abort"
            (self.server.schemas.abort if abort else self.server.schemas.cancel)(header)
        except (WireError, Exception) as exc:  # noqa: BLE001 - a bad control message is logged, never fatal
            self.server.log(f"control: dropped a bad message ({type(exc).__name__}: {exc})")
            return
        if header["instance"] != self.server.instance:
            return
        if abort:
            self.server.log(f"the driver stopped this worker: {header['reason']}")
            os._exit(70)  # no clean-up: the main thread may be blocked in a collective
        self.server.cancel(header["id"])

    def _check_parent(self):
        if self.parent_pid and os.getppid() != self.parent_pid:
            self.server.log(f"driver process {self.parent_pid} is gone; exiting")
            os._exit(0)

    def stop(self):
        self.stop_event.set()
