"""CURVE between a worker and a driver on another machine (ts/wire/curve.ts, DESIGN.md "Trust
boundaries"). `prcl keys --out DIR` writes the certificates; a worker holds the driver's public
certificate (driver.key) and its own secret one (worker.key_secret), so it talks only to that
driver and the driver admits only holders of worker.key_secret."""

import ipaddress
import os
import re
from dataclasses import dataclass

import zmq
import zmq.auth


@dataclass(frozen=True)
class Curve:
    server_key: bytes
    public_key: bytes
    secret_key: bytes

    def apply(self, sock):
        """Make `sock` a CURVE client of the driver (before connect)."""
        sock.curve_serverkey = self.server_key
        sock.curve_publickey = self.public_key
        sock.curve_secretkey = self.secret_key


def load(directory):
    """Read DIR/driver.key and DIR/worker.key_secret; ValueError naming the file on any problem."""
    driver, own = os.path.join(directory, "driver.key"), os.path.join(directory, "worker.key_secret")
    for path in (driver, own):
        if not os.path.isfile(path):
            raise ValueError(f"{path} is missing: copy it from the key directory `prcl keys --out DIR` made")
    if os.stat(own).st_mode & 0o077:
        raise ValueError(f"{own} can be read by other users; chmod 600 it")
    try:
        server_key, _ = zmq.auth.load_certificate(driver)
        public_key, secret_key = zmq.auth.load_certificate(own)
    except (OSError, ValueError, zmq.ZMQError) as exc:
        raise ValueError(f"cannot read the CURVE certificates in {directory}: {exc}") from None
    if not server_key or len(server_key) != 40:
        raise ValueError(f"{driver} holds no 40-character public-key")
    if not secret_key or len(secret_key) != 40:
        raise ValueError(f"{own} holds no secret-key")
    return Curve(server_key, public_key, secret_key)


def is_loopback(endpoint):
    """True for endpoints that stay on this machine: ipc://, inproc://, tcp to a loopback address."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    m = re.match(r"^tcp://(\[[^\]]+\]|[^:/]+):", endpoint)
    if not m:
        return False
    host = m.group(1).strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere
