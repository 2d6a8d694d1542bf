"""python -m prcl_worker --connect ENDPOINT: serve ops to the driver bound at ENDPOINT."""

import argparse
import os
import sys


def _die_with_parent():
    """Linux: have the kernel send SIGTERM when the driver dies, so no orphan is left."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except OSError:
        pass


def main(argv=None):
    p = argparse.ArgumentParser(prog="prcl-worker", description=__doc__)
    p.add_argument("--connect", required=True, help="driver endpoint, e.g. ipc:///tmp/prcl-1.sock or tcp://host:5555")
    p.add_argument("--instance", help="instance id (default: a new UUID)")
    p.add_argument("--parent-pid", type=int, help="exit when this process (the driver) is gone")
    p.add_argument("--schemas", help="directory of the generated JSON Schemas")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--heartbeat-ms", type=int, default=1000)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: the CPUs this process may use)")
    p.add_argument("--decode-threads", type=int, default=0,
                   help="threads decoding one request's images (default: the CPUs this process may use, at most 8)")
    p.add_argument("--spin-us", type=int, default=300, help="poll this long after a reply before sleeping")
    p.add_argument("--keys", help="CURVE key directory holding driver.key and worker.key_secret (`prcl keys`)")
    p.add_argument("--insecure", action="store_true",
                   help="allow a tcp endpoint off this machine without CURVE keys "
                        "(anyone on the path can read and inject)")
    p.add_argument("--driver-wait-s", type=float,
                   help="exit after this long with no driver connected (default: 600; 0 with --parent-pid: "
                        "the driver's death ends a spawned worker anyway); 0 waits forever")
    p.add_argument("--data-root",
                   help="where this machine holds the dataset, for runs whose ranks read their own data "
                        "(data.reader: rank); default: the driver's data.root")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    from . import curve
    keys = None
    if args.keys:
        try:
            keys = curve.load(args.keys)
        except ValueError as exc:
            p.error(f"--keys: {exc}")
    elif not curve.is_loopback(args.connect) and not args.insecure:
        p.error(f"--connect {args.connect} leaves this machine: pass --keys DIR (from `prcl keys --out DIR`) "
                "so the driver and this worker authenticate each other, or --insecure to connect without")
    if args.parent_pid:
        _die_with_parent()
        if os.getppid() != args.parent_pid:
            sys.exit(0)  # the driver died before we got here
    import torch

    from .server import Server
    from .train.runtime import pick_threads
    torch.set_num_threads(pick_threads(args.threads or None))
    from .inputs import default_decode_threads, set_data_root_override, set_decode_threads
    if args.data_root:
        if not os.path.isdir(args.data_root):
            p.error(f"--data-root {args.data_root}: no such directory")
        set_data_root_override(args.data_root)
    try:
        set_decode_threads(args.decode_threads or default_decode_threads())
    except ValueError as exc:
        p.error(f"--decode-threads: {exc}")
    driver_wait_s = args.driver_wait_s if args.driver_wait_s is not None else (0 if args.parent_pid else 600)
    return Server(args.connect, instance=args.instance, schemas_dir=args.schemas, device=args.device,
                  heartbeat_ms=args.heartbeat_ms, parent_pid=args.parent_pid, quiet=args.quiet,
                  spin_us=args.spin_us, curve=keys, driver_wait_s=driver_wait_s).run()


if __name__ == "__main__":
    sys.exit(main())
