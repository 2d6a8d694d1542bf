// The public API of prcl, for Node scripts and the REPL.
export { Worker, closeAllWorkers, type WorkerOptions } from './worker/worker.ts'
export { findPython, PythonNotFoundError, type PythonChoice, type PythonProbe } from './worker/python.ts'
export { Connection, type CallOptions, type CallResult, type ConnectionOptions } from './wire/connection.ts'
export { WorkerError, WorkerDiedError, DeadlineError, ProtocolError, ClosedError } from './wire/errors.ts'
export { tensor, numel, nbytes, type Tensor, type Tensors } from './wire/tensor.ts'
export { DTYPES, itemsize, type DType } from './wire/dtype.ts'
export { PROTOCOL_VERSION, type Hello, type Heartbeat } from './wire/envelope.ts'
export { OPS, type OpName, type OpArgs, type OpResult } from './wire/ops/index.ts'
