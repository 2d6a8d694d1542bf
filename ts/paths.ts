// Where the project's own files are, independent of the working directory.
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
export const SCHEMAS_DIR = join(ROOT, 'schemas')
export const PY_DIR = join(ROOT, 'py')
