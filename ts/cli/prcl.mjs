#!/usr/bin/env node
// The `prcl` command. Plain JS so that it runs without a build step.
//
// In a checkout (the TypeScript sources sit next to this file) it registers tsx's loader and runs
// ts/cli/main.ts, so what runs is always the code as edited, never a stale dist/. In an installed
// package (no sources; `npm run build` made dist/ before packing) it runs dist/cli/main.js.
// PRCL_BUILT=1 runs dist/ in a checkout too (after `npm run build`).
import { existsSync } from 'node:fs'

const source = new URL('./main.ts', import.meta.url)
const built = new URL('../../dist/cli/main.js', import.meta.url)

if (existsSync(built) && (process.env.PRCL_BUILT === '1' || !existsSync(source))) {
  await import(built.href)
} else {
  const { register } = await import('tsx/esm/api')
  register()
  await import(source.href)
}
