"""Errors that travel to the driver as data: ``{type, message, traceback, retryable, path}``."""

import traceback as _tb


class WireError(Exception):
    """An error the worker reports about a request (not a bug in the worker)."""

    type = "WireError"
    retryable = False

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = path


class BadMessage(WireError):
    type = "BadMessage"


class InvalidArgument(WireError):
    type = "InvalidArgument"


class UnknownOp(WireError):
    type = "UnknownOp"


class StaleInstance(WireError):
    type = "StaleInstance"


class DeadlineExceeded(WireError):
    type = "DeadlineExceeded"


class Cancelled(WireError):
    type = "Cancelled"


def error_body(exc):
    """The wire form of an exception, with the traceback for unexpected ones."""
    if isinstance(exc, WireError):
        body = {"type": exc.type, "message": str(exc), "traceback": [], "retryable": exc.retryable}
        if exc.path is not None:
            body["path"] = exc.path
        return body
    name = type(exc).__name__
    message = str(exc)
    retryable = False
    # CUDA out-of-memory is worth a retry with a smaller batch; name it so the driver can tell.
    if name == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and "out of memory" in message):
        name, retryable = "CudaOOM", True
    return {
        "type": name,
        "message": message,
        "traceback": _tb.format_exception(type(exc), exc, exc.__traceback__),
        "retryable": retryable,
    }
