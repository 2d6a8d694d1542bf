"""The prcl worker: executes tensor work for the TypeScript driver over ZeroMQ."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
