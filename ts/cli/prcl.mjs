#!/usr/bin/env node
// The `prcl` command. Plain JS so that it runs without a build step: it registers tsx's
// loader and hands over to the TypeScript entry point.
import { register } from 'tsx/esm/api'

register()
await import('./main.ts')
