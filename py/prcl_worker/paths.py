"""Where the worker may touch files: only inside the directories the driver named at configure
(`paths: {write: [...], read: [...]}`; a write directory is readable too). Every path is resolved
with realpath, so neither `..` nor a symlink leads out. Before configure nothing is allowed.
"""

import os

from .errors import InvalidArgument


class PathRefused(InvalidArgument):
    type = "PathRefused"


def _real(path):
    return os.path.realpath(os.path.abspath(os.fspath(path)))


def _inside(path, root):
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives
        return False


class PathPolicy:
    def __init__(self, write=(), read=()):
        self.write = [_real(d) for d in write]
        self.read = self.write + [_real(d) for d in read]

    @classmethod
    def from_args(cls, paths):
        """The policy of configure's `paths`; None (the driver named none) allows any path."""
        if paths is None:
            return None
        return cls(paths.get("write", ()), paths.get("read", ()))

    def check(self, path, mode, field="path"):
        """The resolved path, or PathRefused naming it and the allowed directories."""
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise PathRefused(f"{field}: not a path ({path!r})", field)
        real = _real(path)
        roots = self.write if mode == "write" else self.read
        if not any(_inside(real, root) for root in roots):
            named = ", ".join(roots) if roots else "none"
            via = "" if real == os.path.abspath(os.fspath(path)) else f" (resolves to {real})"
            doing = "writing" if mode == "write" else "reading"
            raise PathRefused(f"{field}: {os.fspath(path)}{via} is outside the directories the driver "
                              f"allowed for {doing} at configure ({named})", field)
        return real


NOTHING = PathPolicy()


def check(ctx, path, mode, field="path"):
    """Check `path` against the configured policy: before configure every path is refused."""
    if "paths" not in ctx.state:
        raise PathRefused(f"{field}: the worker is not configured, so it may touch no file "
                          f"(refused {os.fspath(path) if isinstance(path, (str, os.PathLike)) else path!r})", field)
    policy = ctx.state["paths"]
    return os.fspath(path) if policy is None else policy.check(path, mode, field)
