// Fake dataset trees in temp folders: empty files, or given bytes.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `prcl-${prefix}-`))
}

/** Create files under `root` (paths relative to it); a string array makes empty files. */
export function makeTree(root: string, files: string[] | Record<string, string | Uint8Array>): string {
  const entries = Array.isArray(files) ? files.map((f) => [f, ''] as const) : Object.entries(files)
  for (const [rel, content] of entries) {
    const path = join(root, rel)
    mkdirSync(dirname(path), { recursive: true })
    writeFileSync(path, content)
  }
  return root
}
