// CURVE key files and endpoint rules (the handshake itself is tested with real peers in
// test/experiment/remote.test.ts).
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { inject } from 'vitest'
import { isLoopback, listenIssue, loadDriverKeys, readCertificate, writeKeys, z85 } from '../../ts/wire/curve.ts'

const dir = mkdtempSync(join(tmpdir(), 'prcl-curve-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('CURVE keys', () => {
  it('z85 encodes as the ZeroMQ spec (32/Z85) says', () => {
    expect(z85(Buffer.from([0x86, 0x4f, 0xd2, 0x6f, 0xb5, 0x59, 0xf7, 0x5b]))).toBe('HelloWorld')
  })

  it('writes certificates pyzmq reads, secrets private, and never overwrites without force', () => {
    const keys = join(dir, 'keys')
    const files = writeKeys(keys)
    expect(files.map((f) => f.slice(keys.length + 1))).toEqual(['driver.key', 'driver.key_secret', 'worker.key', 'worker.key_secret'])
    expect(statSync(join(keys, 'worker.key_secret')).mode & 0o777).toBe(0o600)
    expect(statSync(keys).mode & 0o777).toBe(0o700)
    const mine = readCertificate(join(keys, 'worker.key_secret'))
    expect(mine.publicKey).toMatch(/^.{40}$/)
    expect(readCertificate(join(keys, 'worker.key'))).toEqual({ publicKey: mine.publicKey, secretKey: undefined })
    // The worker side reads them with pyzmq's own loader.
    const py = execFileSync(inject('python'), ['-c', `import zmq.auth; p, s = zmq.auth.load_certificate(${JSON.stringify(join(keys, 'worker.key_secret'))}); print(p.decode(), s.decode())`]).toString().trim()
    expect(py).toBe(`${mine.publicKey} ${mine.secretKey}`)
    const driver = loadDriverKeys(keys)
    expect(driver.authorized).toEqual([mine.publicKey])
    expect(() => writeKeys(keys)).toThrow(/already exist; pass --force to replace them/)
    writeKeys(keys, { force: true })
    expect(readCertificate(join(keys, 'worker.key')).publicKey).not.toBe(mine.publicKey)
  })

  it('names the file and the problem', () => {
    const bad = join(dir, 'bad.key')
    writeFileSync(bad, 'metadata\ncurve\n    public-key = "short"\n')
    expect(() => readCertificate(bad)).toThrow(`${bad}: public-key is not a 40-character Z85 key`)
    writeFileSync(bad, 'hello\n')
    expect(() => readCertificate(bad)).toThrow(/is not a CURVE certificate \(no public-key line\)/)
    expect(() => readCertificate(join(dir, 'none.key'))).toThrow(/cannot read the CURVE certificate .*none\.key/)
    expect(() => loadDriverKeys(join(dir, 'nowhere'))).toThrow(/world\.keys: .*nowhere is not a directory; make one with `prcl keys --out/)
    const lonely = join(dir, 'lonely')
    writeKeys(lonely)
    rmSync(join(lonely, 'worker.key'))
    expect(() => loadDriverKeys(lonely)).toThrow(/holds no worker certificate \(\*\.key besides driver\.key\): no worker could connect/)
    expect(readFileSync(join(lonely, 'driver.key'), 'utf8')).toMatch(/ZeroMQ CURVE Public Certificate/)
  })

  it('knows which endpoints stay on this machine', () => {
    for (const e of ['ipc:///tmp/x.sock', 'tcp://127.0.0.1:5555', 'tcp://127.1.2.3:1', 'tcp://localhost:5', 'tcp://[::1]:5']) expect(isLoopback(e)).toBe(true)
    for (const e of ['tcp://0.0.0.0:5555', 'tcp://10.0.0.1:5', 'tcp://node7:5', 'tcp://[::]:5', 'tcp://eth0:5']) expect(isLoopback(e)).toBe(false)
    expect(listenIssue('tcp://0.0.0.0:5555', false, false)).toMatch(/no CURVE keys/)
    expect(listenIssue('tcp://0.0.0.0:5555', true, false)).toBeNull()
    expect(listenIssue('tcp://0.0.0.0:5555', false, true)).toBeNull()
    expect(listenIssue('tcp://127.0.0.1:5555', false, false)).toBeNull()
    expect(listenIssue('tcp://127.0.0.1', false, false)).toMatch(/is not a tcp:\/\/HOST:PORT endpoint/)
  })
})
