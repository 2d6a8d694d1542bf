// A Node script that generates the synthetic dataset, trains PRCL on it for a few epochs, and
// follows the run through its events. Run: npx tsx examples/train-synthetic.ts
import { DEMO_DATA, Experiment, generateSynthetic, loadConfig } from '../ts/index.ts'

const data = 'runs/example/data'
await generateSynthetic({ out: data, ...DEMO_DATA }) // the demo's dataset
const config = loadConfig('synthetic-demo', [`data.root=${data}`, 'sampling.epochs=2', 'name=example'])
const run = new Experiment(config, { runDir: 'runs/example/prcl', progress: false })
run.on('step', (e) => { if (e.step % 20 === 0) console.log(`step ${e.step}: total ${e.total.toFixed(3)}`) })
run.on('eval', (e) => console.log(`epoch ${e.epoch}: mIoU ${(e.miou * 100).toFixed(2)}`))
const summary = await run.run()
console.log(`best mIoU ${((summary.best?.miou ?? 0) * 100).toFixed(2)} — ${summary.run_dir}`)
