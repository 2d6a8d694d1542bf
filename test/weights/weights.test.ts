// model.pretrained: the catalog's ImageNet files found (or named, with where to get them), any
// file hashed, downloads checked byte for byte, and an unknown pickle refused on torch < 2.6
// unless trusted — through a real CLI, a real HTTP server and a real worker.
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { preset, presetNames } from '../../ts/config/presets.ts'
import { Experiment } from '../../ts/experiment/run.ts'
import { PY_DIR, ROOT } from '../../ts/paths.ts'
import { IMAGENET, type WeightsFile } from '../../ts/weights/catalog.ts'
import { fetchWeights } from '../../ts/weights/fetch.ts'
import { resolvePretrained, weightsDirs } from '../../ts/weights/resolve.ts'
import type { Worker } from '../../ts/worker/worker.ts'
import { closeTinyRun, sharedTinyRun, tinyConfig } from '../setup/tiny-run.ts'

const run = promisify(execFile)
const PRCL = join(ROOT, 'ts/cli/prcl.mjs')
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex')

let dir: string
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'prcl-weights-')) })
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** A catalog of one made-up file (these machines cannot fetch the real ones). */
function testCatalog(bytes: Buffer): Record<string, WeightsFile> {
  return { resnet18: { backbone: 'resnet18', file: 'resnet18-test.pth', url: 'http://127.0.0.1:9/resnet18-test.pth', sha256: sha(bytes) } }
}

async function prcl(args: string[], env: Record<string, string> = {}) {
  return run(process.execPath, [PRCL, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, PRCL_DEBUG: '', ...env } })
    .then((r) => ({ code: 0, ...r }), (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }))
}

describe('presets', () => {
  it('every real preset starts from ImageNet weights; those on generated scenes say none', () => {
    for (const name of presetNames()) {
      const m = preset(name)!.model
      expect(m.pretrained, name).toBe(/^(synthetic|digits)/.test(name) ? 'none' : 'imagenet')
      if (m.pretrained === 'imagenet') expect(IMAGENET[m.backbone], name).toBeDefined()
    }
  })
  it('the released file is pinned by its whole sha256, whose first 8 digits are in its name', () => {
    expect(IMAGENET.resnet101!.file).toBe('resnet101-63fe2227.pth')
    for (const w of Object.values(IMAGENET)) {
      expect(w.sha256).toMatch(/^[0-9a-f]{64}$/)
      expect(w.file).toContain(`-${w.sha256.slice(0, 8)}.pth`)
      expect(w.url).toBe(`https://download.pytorch.org/models/${w.file}`)
    }
  })
})

describe('resolvePretrained', () => {
  const model = { backbone: 'resnet18', width: 1 }
  it('imagenet: the first directory holding the file, its sha256 checked', async () => {
    const bytes = Buffer.from('pretend weights')
    const catalog = testCatalog(bytes)
    const [a, b] = [join(dir, 'a'), join(dir, 'b')]
    mkdirSync(a, { recursive: true })
    mkdirSync(b, { recursive: true })
    writeFileSync(join(b, 'resnet18-test.pth'), bytes)
    expect(await resolvePretrained({ ...model, pretrained: 'imagenet' }, { catalog, dirs: [a, b] }))
      .toEqual({ path: join(b, 'resnet18-test.pth'), sha256: sha(bytes), trusted: true })
    writeFileSync(join(a, 'resnet18-test.pth'), 'damaged')
    await expect(resolvePretrained({ ...model, pretrained: 'imagenet' }, { catalog, dirs: [a, b] }))
      .rejects.toThrow(`${join(a, 'resnet18-test.pth')}: sha256 ${sha('damaged')}, but resnet18-test.pth has sha256 ${sha(bytes)}`)
  })
  it('imagenet, missing: the error names the file, the URL, the sha256, where to put it and the way out', async () => {
    const err = await resolvePretrained({ backbone: 'resnet101', width: 1, pretrained: 'imagenet' }, { dirs: [join(dir, 'empty')] }).catch((e: Error) => e)
    const w = IMAGENET.resnet101!
    for (const part of [w.file, w.url, w.sha256, join(dir, 'empty'), 'prcl weights fetch resnet101', 'model.pretrained: none']) {
      expect((err as Error).message).toContain(part)
    }
  })
  it('imagenet at a reduced width, or for an unknown backbone: says why not', async () => {
    await expect(resolvePretrained({ backbone: 'resnet18', width: 0.25, pretrained: 'imagenet' }, { dirs: [dir] }))
      .rejects.toThrow(/at width 1, and model.width is 0.25; set model.pretrained: none/)
    await expect(resolvePretrained({ backbone: 'resnet34', width: 1, pretrained: 'imagenet' }, { dirs: [dir] }))
      .rejects.toThrow(/no ImageNet weights are known for resnet34 \(known: resnet18, resnet50, resnet101\)/)
  })
  it('a path: hashed; trusted when the catalog pins its sha256 or the user says so', async () => {
    const bytes = Buffer.from('some file')
    const file = join(dir, 'mine.pth')
    writeFileSync(file, bytes)
    const p = { ...model, pretrained: file }
    expect(await resolvePretrained(p)).toEqual({ path: file, sha256: sha(bytes), trusted: false })
    expect(await resolvePretrained(p, { trust: true })).toMatchObject({ trusted: true })
    expect(await resolvePretrained(p, { catalog: testCatalog(bytes) })).toMatchObject({ trusted: true })
    await expect(resolvePretrained({ ...model, pretrained: join(dir, 'nope.pth') })).rejects.toThrow(`model.pretrained: ${join(dir, 'nope.pth')}: no such file`)
    expect(await resolvePretrained({ ...model, pretrained: 'none' })).toBeNull()
    expect(await resolvePretrained({ ...model, pretrained: null })).toBeNull()
  })
  it('the directories: $PRCL_WEIGHTS, then torch\'s hub cache', () => {
    expect(weightsDirs({ HOME: '/h' } as NodeJS.ProcessEnv)[0]).toMatch(/\.cache\/torch\/hub\/checkpoints$/)
    expect(weightsDirs({ PRCL_WEIGHTS: '/w', TORCH_HOME: '/t' } as NodeJS.ProcessEnv)).toEqual(['/w', '/t/hub/checkpoints'])
    expect(weightsDirs({ XDG_CACHE_HOME: '/x' } as NodeJS.ProcessEnv)).toEqual(['/x/torch/hub/checkpoints'])
  })
})

describe('fetch', () => {
  let server: Server
  let base: string
  const served = new Map<string, Buffer>()
  beforeAll(async () => {
    server = createServer((req, res) => {
      const body = served.get(req.url ?? '')
      if (!body) { res.writeHead(404).end(); return }
      res.writeHead(200, { 'content-length': body.length }).end(body)
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(() => new Promise<void>((r) => server.close(() => r())))

  it('downloads, checks every byte, and takes the name only when they match', async () => {
    const bytes = Buffer.alloc(3 << 20, 7)
    const entry = { ...testCatalog(bytes).resnet18!, url: `${base}/resnet18-test.pth` }
    served.set('/resnet18-test.pth', bytes)
    const to = join(dir, 'fetched')
    const seen: number[] = []
    const r = await fetchWeights(entry, to, { progress: (b) => seen.push(b) })
    expect(r).toMatchObject({ path: join(to, 'resnet18-test.pth'), sha256: sha(bytes), downloaded: true, bytes: bytes.length })
    expect(seen.at(-1)).toBe(bytes.length)
    expect((await fetchWeights(entry, to)).downloaded).toBe(false)
    // found afterwards by model.pretrained: imagenet
    expect(await resolvePretrained({ backbone: 'resnet18', width: 1, pretrained: 'imagenet' }, { catalog: { resnet18: entry }, dirs: [to] }))
      .toMatchObject({ path: r.path, trusted: true })
  })
  it('a foreign file, an absent one and an unreachable host leave nothing behind', async () => {
    served.set('/resnet101-63fe2227.pth', Buffer.from('not the published file'))
    const to = join(dir, 'refused')
    const r = await prcl(['weights', 'fetch', 'resnet101', '--mirror', base, '--dir', to])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`the 22 bytes downloaded have sha256 ${sha('not the published file')}, not resnet101-63fe2227.pth's ${IMAGENET.resnet101!.sha256}; nothing was kept`)
    expect(existsSync(to) ? readdirSync(to) : []).toEqual([])
    const absent = await prcl(['weights', 'fetch', 'resnet50', '--mirror', base + '/', '--dir', to])
    expect(absent.stderr).toContain(`cannot download ${base}/resnet50-0676ba61.pth (HTTP 404`)
    const closed = await new Promise<number>((r) => { const s = createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as AddressInfo).port; s.close(() => r(p)) }) })
    const down = await prcl(['weights', 'fetch', 'resnet50', '--mirror', `http://127.0.0.1:${closed}`, '--dir', to])
    expect(down.code).toBe(1)
    expect(down.stderr).toContain(`cannot download http://127.0.0.1:${closed}/resnet50-0676ba61.pth (ECONNREFUSED)`)
    expect(down.stderr).toContain(`put it at ${join(to, 'resnet50-0676ba61.pth')} (sha256 ${IMAGENET.resnet50!.sha256})`)
    expect(existsSync(to) ? readdirSync(to) : []).toEqual([])
    const bad = await prcl(['weights', 'fetch', 'resnet34'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('no ImageNet weights are known for resnet34')
  })
  it('list: every file, its URL and sha256, and where it was found', async () => {
    const w = join(dir, 'listed')
    mkdirSync(w, { recursive: true })
    writeFileSync(join(w, 'resnet50-0676ba61.pth'), 'x')
    const r = await prcl(['weights', 'list', '--json'], { PRCL_WEIGHTS: w, TORCH_HOME: join(dir, 'torch') })
    const out = JSON.parse(r.stdout) as { dirs: string[]; weights: Array<WeightsFile & { found: string | null }> }
    expect(out.dirs).toEqual([w, join(dir, 'torch', 'hub', 'checkpoints')])
    expect(out.weights.map((x) => [x.backbone, x.found])).toEqual([['resnet18', null], ['resnet50', join(w, 'resnet50-0676ba61.pth')], ['resnet101', null]])
  })
})

describe('a run', () => {
  it('a real preset without its weights refuses to start, says how to get them, and leaves no run directory', async () => {
    const runs = join(dir, 'runs')
    const r = await prcl(['train', '--config', 'voc-662-prcl', '--set', `runs_dir=${runs}`, '--set', `data.root=${join(dir, 'voc')}`],
      { PRCL_WEIGHTS: join(dir, 'none-here'), TORCH_HOME: join(dir, 'torch') })
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`resnet101-63fe2227.pth (resnet101's ImageNet weights) is not in ${join(dir, 'none-here')} or ${join(dir, 'torch', 'hub', 'checkpoints')}`)
    expect(r.stderr).toContain(IMAGENET.resnet101!.url)
    expect(r.stderr).toContain('set model.pretrained: none')
    expect(r.stderr).not.toMatch(/^\s+at /m)
    expect(existsSync(runs)).toBe(false)
  })

  describe('with a worker', () => {
    const tiny: { worker?: Worker; dir?: string; data?: string } = {}
    beforeAll(async () => Object.assign(tiny, await sharedTinyRun('weights')), 180_000)
    afterAll(() => closeTinyRun(tiny))

    it('an unknown .pth: refused on torch < 2.6 unless trusted; a safetensors copy needs no trust', async () => {
      const python = inject('python')
      const pth = join(tiny.dir!, 'r18q.pth')
      const st = join(tiny.dir!, 'r18q.safetensors')
      // The tiny run's trunk (resnet18 at width 0.25) with seeded weights, saved both ways.
      const script = 'import sys, torch, safetensors.torch\nfrom prcl_worker.model import PrclNet\ntorch.manual_seed(1)\n' +
        'sd = {k: v.contiguous() for k, v in PrclNet(5, "resnet18", 8, 32, 0.25).student.backbone.state_dict().items()}\n' +
        'torch.save(sd, sys.argv[1]); safetensors.torch.save_file(sd, sys.argv[2]); print(torch.__version__)'
      const { stdout } = await run(python, ['-c', script, pth, st], { env: { ...process.env, PYTHONPATH: PY_DIR }, encoding: 'utf8' })
      const [major, minor] = stdout.trim().split(/[.+]/).map(Number) as [number, number]
      const old = major < 2 || (major === 2 && minor < 6)
      const train = async (name: string, file: string, trustWeights?: boolean) => {
        const cfg = tinyConfig(tiny.data!, name, [`model.pretrained=${file}`, `runs_dir=${join(tiny.dir!, 'runs')}`])
        const exp = new Experiment(cfg, { worker: tiny.worker, stopAfter: 2, progress: false, trustWeights })
        return exp.run().then((s) => ({ steps: s.steps, dir: exp.runDir }), (e: Error) => ({ error: e.message, dir: exp.runDir }))
      }
      const untrusted = await train('untrusted', pth)
      if (old) {
        expect(untrusted).toMatchObject({ error: expect.stringMatching(/pickle-based torch file that prcl does not know by its sha256.*CVE-2025-32434.*--trust-weights/) })
        expect(existsSync(untrusted.dir)).toBe(false)
      } else {
        expect(untrusted).toMatchObject({ steps: 2 })
      }
      expect(await train('trusted', pth, true)).toMatchObject({ steps: 2 })
      expect(await train('safetensors', st)).toMatchObject({ steps: 2 })
    }, 300_000)
  })
})
