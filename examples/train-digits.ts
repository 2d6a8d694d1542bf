// A Node script that makes the demo's digit scenes and pretrained trunk, trains PRCL on them for a
// few epochs, and follows the run through its events. Run: npx tsx examples/train-digits.ts
import { DIGITS_PRESET, Experiment, loadConfig, prepareDigits } from '../ts/index.ts'

const recipe = await prepareDigits('runs/example') // scenes of the digits 0-3, a trunk trained on 4-9
const config = loadConfig(DIGITS_PRESET, [...recipe.set, 'sampling.epochs=2', 'name=example'])
const run = new Experiment(config, { runDir: 'runs/example/prcl', progress: false })
run.on('step', (e) => { if (e.step % 20 === 0) console.log(`step ${e.step}: total ${e.total.toFixed(3)}`) })
run.on('eval', (e) => console.log(`epoch ${e.epoch}: mIoU ${(e.miou * 100).toFixed(2)}`))
const summary = await run.run()
console.log(`best mIoU ${((summary.best?.miou ?? 0) * 100).toFixed(2)} — ${summary.run_dir}`)
