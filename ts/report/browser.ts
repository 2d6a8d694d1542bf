// Opening a report in a real headless browser (Chromium through puppeteer-core): what the tests
// check and what `prcl report --screenshot` uses. The executable: PRCL_CHROME, else the first
// chromium / google-chrome on PATH.
import { spawnSync } from 'node:child_process'
import { pathToFileURL } from 'node:url'
import { messageOf } from '../wire/errors.ts'

export interface PageCheck {
  /** Console errors and uncaught exceptions, in order. */
  errors: string[]
  /** Every chart by its title, and whether its canvas holds any drawn pixel. */
  charts: Array<{ title: string; drawn: boolean }>
  /** Pictures that loaded (natural width > 0) of all on the page. */
  pictures: { loaded: number; total: number }
  tables: number
  /** The page's visible text, section by section id (e.g. 'sweep', 'comparison'). */
  sections: Record<string, string>
}

export function findChrome(): string {
  const named = process.env.PRCL_CHROME
  if (named) return named
  for (const c of ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']) {
    const r = spawnSync('sh', ['-c', `command -v ${c}`], { encoding: 'utf8' })
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim()
  }
  throw new Error('no headless browser found: install chromium (apt-get install chromium) or set PRCL_CHROME=/path/to/chrome')
}

/** Load `htmlFile`, wait for the page to say it is ready, check it, optionally screenshot it. */
/** `fullPage: false` keeps the screenshot to the first `height` pixels (default 900). */
export async function openReport(htmlFile: string, o: { screenshot?: string; width?: number; height?: number; fullPage?: boolean } = {}): Promise<PageCheck> {
  const { default: puppeteer } = await import('puppeteer-core')
  const browser = await puppeteer.launch({
    executablePath: findChrome(), headless: true,
    // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--allow-file-access-from-files'],
  })
  try {
    const page = await browser.newPage()
    await page.setViewport({ width: o.width ?? 1000, height: o.height ?? 900 })
    const errors: string[] = []
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()) })
    page.on('pageerror', (e) => errors.push(messageOf(e)))
    await page.goto(pathToFileURL(htmlFile).href, { waitUntil: 'load' })
    await page.waitForFunction('window.reportReady === true', { timeout: 30_000 }).catch(() => errors.push('the page never said it was ready (window.reportReady)'))
    const found = await page.evaluate(`(() => {
      const charts = [...document.querySelectorAll('.chart')].map((box) => {
        const canvas = box.querySelector('canvas')
        let drawn = false
        if (canvas && canvas.width && canvas.height) {
          const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data
          for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) { drawn = true; break }
        }
        return { title: box.getAttribute('data-chart'), drawn }
      })
      const imgs = [...document.querySelectorAll('img')]
      return { charts, pictures: { loaded: imgs.filter((i) => i.complete && i.naturalWidth > 0).length, total: imgs.length }, tables: document.querySelectorAll('table.heat, table.compare').length,
        sections: Object.fromEntries([...document.querySelectorAll('section[id]')].map((s) => [s.id, s.innerText])) }
    })()`) as Omit<PageCheck, 'errors'>
    if (o.screenshot) await page.screenshot({ path: o.screenshot as `${string}.png`, fullPage: o.fullPage ?? true })
    return { errors, ...found }
  } finally {
    await browser.close()
  }
}
