// Browser end-to-end checks of the page, driven by playwright-core in Debian's Chromium.
// Normally started by tests/browser/run.sh, which builds and serves the page:
//
//   node tests/browser/e2e.mjs --port PORT --query 'seed=0&epochs=5&...' --algs stocBiO,AID-CG \
//        --reference-dir target/browser --out target/browser [--chromium /usr/bin/chromium]
//
// 1. toy (per algorithm): with SwiftShader's WebGPU the page runs the toy problem to the end
//    without console errors, and every iteration's hypergradient (f32, GPU) matches the native
//    CPU f64 reference `<reference-dir>/cpu_reference_<alg>.jsonl` (same seed: same data and
//    mini-batches) to a relative L2 error of 2e-3, and the outer loss to 1e-3.
// 2. controls: the form starts a run, Pause holds it, Resume continues, Reset clears it.
// 3. errors: a bad setting in the address and a diverging run are shown on the page.
// 4. no-webgpu: a Chromium without the WebGPU flags gets a visible explanation.
// 5. landscape: the heat map (Φ on the grid, one stacked GPU solve) against the CLI's CPU grid and
//    the closed form; every estimator's hypergradient (each stocBiO draw) against `bilevel
//    landscape --backend cpu` at the same λ and settings, after a slider move and a click too; the
//    animated descent against the CLI's descent.
// 6. clean: hyper-cleaning on the packaged MNIST subset, every record against `bilevel hyperclean
//    --backend cpu` on the same subset and seed (oracle counts exact, numbers to f32 tolerance).
// 7. race: the chosen algorithms' records against the toy CPU references (oracle counts exact).
// Each panel's screenshot goes to --out; measured figures (first result, per-iteration times,
// frame rates) to <out>/metrics.json.
// Ends with "N passed, M failed"; exit status 1 if anything failed.

import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const HYPERGRAD_TOL = 2e-3;
const LOSS_TOL = 1e-3;
const RUN_TIMEOUT_MS = 180_000;

function parseArgs(argv) {
  const args = {
    port: null, query: '', algs: 'stocBiO,AID-CG', referenceDir: 'target/browser',
    out: 'target/browser', chromium: '/usr/bin/chromium', bilevel: 'target/debug/bilevel',
    raceAlgs: 'stocBiO,AID-FP,AID-CG,reverse', epochs: '10', tests: 'landscape,clean,race,toy,controls,errors,no-webgpu',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '').replace(/-(.)/g, (_, c) => c.toUpperCase());
    if (!(key in args) || i + 1 >= argv.length) throw new Error(`bad argument ${argv[i]}`);
    args[key] = argv[i + 1];
  }
  if (!args.port) throw new Error('--port is required');
  return args;
}

const args = parseArgs(process.argv.slice(2));
const base = `http://127.0.0.1:${args.port}/`;
mkdirSync(args.out, { recursive: true });

const WEBGPU_FLAGS = ['--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader'];
const COMMON_FLAGS = [
  '--headless', '--no-sandbox', '--disable-background-networking',
  '--disable-component-update', '--no-first-run',
];

let passed = 0;
let failed = 0;
function check(name, ok, detail = '') {
  if (ok) passed += 1; else failed += 1;
  console.log(`${ok ? 'PASS' : 'FAIL'}  ${name}${detail ? `: ${detail}` : ''}`);
  return ok;
}

const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
const relL2 = (a, b) => norm(a.map((x, i) => x - b[i])) / Math.max(norm(b), Number.MIN_VALUE);
const relAbs = (a, b) => Math.abs(a - b) / Math.max(Math.abs(b), Number.MIN_VALUE);

async function launch(webgpu) {
  return chromium.launch({
    executablePath: args.chromium,
    args: [...COMMON_FLAGS, ...(webgpu ? WEBGPU_FLAGS : [])],
  });
}

/// A page that collects console errors and page errors (and echoes warnings).
async function openPage(browser, url) {
  const page = await browser.newPage({ viewport: { width: 1366, height: 800 } });
  const problems = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console.error: ${msg.text()}`);
    else if (msg.type() === 'warning') console.log(`      (console.warn: ${msg.text()})`);
  });
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  await page.goto(url);
  return { page, problems };
}

/// Waits until window.__bilevel.status is one of `states`; returns the state object.
async function waitForStatus(page, states, timeout) {
  try {
    await page.waitForFunction(
      (s) => window.__bilevel && s.includes(window.__bilevel.status),
      states, { timeout, polling: 250 },
    );
  } catch (e) {
    // Fall through: the caller reports the status it finds.
  }
  return page.evaluate(() => window.__bilevel);
}


const metrics = { measured_at: new Date().toISOString() };

/// Runs the native CLI and returns its stdout.
function cli(argsList) {
  return execFileSync(resolve(args.bilevel), argsList, { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'pipe'] });
}

/// JSON lines of a CLI results file, without its summary line.
function jsonl(path) {
  return readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => !r.summary);
}

/// Seconds per iteration after the first (which also compiles the shaders): records carry the
/// cumulative solver time `time_s` and the iteration `iter`.
function steadyPerIter(records) {
  const rs = records.filter((r) => r.iter >= 1);
  if (rs.length < 2) return null;
  const [a, b] = [rs[0], rs[rs.length - 1]];
  return (b.time_s - a.time_s) / (b.iter - a.iter);
}

/// Frames counted by the page so far (index.html's requestAnimationFrame counter).
async function frames(page) {
  return page.evaluate(() => [window.__bilevel.metrics.frames, performance.now()]);
}

async function waitPanel(page, panel, states, timeout) {
  try {
    await page.waitForFunction(
      ([p, s]) => window.__bilevel[p] && s.includes(window.__bilevel[p].status),
      [panel, states], { timeout, polling: 200 },
    );
  } catch (e) {
    // The caller reports what it finds.
  }
  return page.evaluate((p) => window.__bilevel[p], panel);
}

const LS_TOL = 2e-3;

/// The landscape CLI reference (CPU, f64) for the page's current point and settings.
function landscapeReference(state, extra = []) {
  const h = state.hyper;
  const out = resolve(args.out, 'landscape_reference.json');
  cli(['landscape', '--backend', 'cpu', `--lambda=${state.lambda[0]},${state.lambda[1]}`, '--T', String(h.t),
    '--hessian_q', String(h.q), '--eta', String(h.eta), '--inner_lr', String(h.alpha), '--outer_lr', String(h.beta),
    '--batch_size', String(h.batch_size), '--draws', String(state.estimates.stocBiO.length), '--out', out, ...extra]);
  return JSON.parse(readFileSync(out, 'utf8'));
}

function compareEstimates(name, state, ref) {
  let worst = 0; let where = '';
  for (const [alg, draws] of Object.entries(ref.estimates)) {
    const mine = state.estimates[alg] || [];
    if (mine.length !== draws.length) { worst = Infinity; where = `${alg}: ${mine.length} draws vs ${draws.length}`; continue; }
    draws.forEach((h, k) => {
      const e = relL2(mine[k], h);
      if (!(e <= worst)) { worst = e; where = `${alg} draw ${k}`; }
    });
  }
  check(`${name}: every estimator's hypergradient matches the CPU (rel L2 <= ${LS_TOL})`, worst <= LS_TOL,
    `worst ${worst.toExponential(3)} (${where}) at λ = (${state.lambda.map((v) => v.toFixed(3)).join(', ')}), T = ${state.hyper.t}`);
  const ex = relL2(state.exact_hypergradient, ref.exact_hypergradient);
  check(`${name}: exact hypergradient (closed form) matches`, ex <= 1e-9, ex.toExponential(2));
  const path = relL2(state.inner_path.flat(), ref.inner_path.flat());
  check(`${name}: inner path matches (rel L2 <= ${LS_TOL})`, path <= LS_TOL, path.toExponential(3));
}

async function landscapeTest(browser) {
  console.log('\n-- landscape');
  const { page, problems } = await openPage(browser, `${base}?panel=landscape`);
  const t0 = Date.now();
  let state = await waitPanel(page, 'landscape', ['ready', 'error'], 180_000);
  check('landscape: map and estimates computed', state.status === 'ready',
    `status ${state.status} after ${((Date.now() - t0) / 1000).toFixed(1)} s${state.error ? ` (${state.error})` : ''}`);
  const m = await page.evaluate(() => window.__bilevel.metrics);
  metrics.first_result_ms = m.first_result_ms;
  metrics.first_result_panel = m.first_result_panel;
  metrics.landscape_grid_ms = state.grid_ms;
  console.log(`      first result on screen ${m.first_result_ms?.toFixed(0)} ms after navigation (${m.first_result_panel}); grid solve ${state.grid_ms?.toFixed(0)} ms`);
  // The target is 3 s; the check allows 2× for the shared, loaded cores this runs on, and
  // metrics.json says whether the target itself was met.
  metrics.first_result_target_met = m.first_result_ms > 0 && m.first_result_ms <= 3000;
  check('landscape: first result on screen within 6 s (target 3 s, met: see metrics.json)', m.first_result_ms > 0 && m.first_result_ms <= 6000,
    `${m.first_result_ms?.toFixed(0)} ms, 3 s target ${metrics.first_result_target_met ? 'met' : 'NOT met'}`);
  if (state.status !== 'ready') { await page.close(); return; }

  const ref = landscapeReference(state);
  const g = ref.axis.length;
  check('landscape: same grid as the CLI', JSON.stringify(state.axis) === JSON.stringify(ref.axis) && state.values.length === g * g);
  let worstCpu = 0; let worstExact = 0;
  state.values.forEach((v, k) => {
    worstCpu = Math.max(worstCpu, relAbs(v, ref.values[k]));
    worstExact = Math.max(worstExact, relAbs(v, ref.exact_values[k]));
  });
  const probes = [0, g - 1, Math.floor(g * g / 2), g * g - 1, 7 * g + 3];
  for (const k of probes) {
    console.log(`      Φ at λ = (${ref.axis[k % g].toFixed(2)}, ${ref.axis[Math.floor(k / g)].toFixed(2)}): page ${state.values[k].toFixed(6)}, CPU ${ref.values[k].toFixed(6)}, closed form ${ref.exact_values[k].toFixed(6)}`);
  }
  check('landscape: heat map matches the CPU grid solve (rel <= 1e-4, all points)', worstCpu <= 1e-4, worstCpu.toExponential(3));
  check('landscape: heat map matches the closed form (rel <= 1e-4, all points)', worstExact <= 1e-4, worstExact.toExponential(3));
  compareEstimates('landscape', state, ref);
  const stoc = state.estimates.stocBiO;
  check('landscape: stocBiO draws differ (a spread is shown)', stoc.length > 1 && relL2(stoc[0], stoc[1]) > 1e-6);

  // A slider: fewer inner steps.
  await page.$eval('#ls-T', (el) => { el.value = '5'; el.dispatchEvent(new Event('input')); });
  await page.waitForFunction(() => window.__bilevel.landscape.status === 'ready' && window.__bilevel.landscape.hyper.t === 5,
    null, { timeout: 120_000 }).catch(() => {});
  state = await page.evaluate(() => window.__bilevel.landscape);
  check('landscape: the T slider updates the estimates', state.hyper.t === 5, `T = ${state.hyper.t}`);
  compareEstimates('landscape (T = 5)', state, landscapeReference(state));

  // A click moves the point.
  const box = await page.locator('#ls-map').boundingBox();
  await page.mouse.click(box.x + box.width * 0.3, box.y + box.height * 0.35);
  await page.waitForFunction(() => window.__bilevel.landscape.status === 'ready' && window.__bilevel.landscape.lambda[0] !== -1,
    null, { timeout: 120_000 }).catch(() => {});
  state = await page.evaluate(() => window.__bilevel.landscape);
  check('landscape: a click moves the point', state.lambda[0] !== -1, `λ = ${JSON.stringify(state.lambda)}`);
  compareEstimates('landscape (clicked point)', state, landscapeReference(state));

  await page.screenshot({ path: resolve(args.out, 'landscape.png'), fullPage: true });

  // The descent animation.
  await page.fill('#ls-steps', '8');
  const f0 = await frames(page);
  await page.click('#ls-run');
  await page.waitForFunction(() => window.__bilevel.landscape.descent_done === true
    && window.__bilevel.landscape.status === 'ready', null, { timeout: 180_000 }).catch(() => {});
  const f1 = await frames(page);
  state = await page.evaluate(() => window.__bilevel.landscape);
  const d = state.descent || [];
  const cfg = state.descent_config;
  check('landscape: descent runs its 8 steps', d.length === 8, `${d.length} steps`);
  if (cfg && d.length) {
    const dref = landscapeReference({ ...state, lambda: cfg.start, hyper: cfg.hyper }, ['--algs', cfg.alg, '--descent', '8']).descent;
    let worst = 0;
    d.forEach((p, k) => { worst = Math.max(worst, relL2(p.lambda, dref[k].lambda)); });
    check(`landscape: descent (${cfg.alg}) follows the CPU's λ path (rel L2 <= ${LS_TOL})`, worst <= LS_TOL, worst.toExponential(3));
  }
  metrics.landscape_descent_fps = (f1[0] - f0[0]) / ((f1[1] - f0[1]) / 1000);
  console.log(`      frame rate during the descent: ${metrics.landscape_descent_fps.toFixed(1)} frames/s`);
  check('landscape: no console errors', problems.length === 0, problems.join(' | '));
  await page.screenshot({ path: resolve(args.out, 'landscape-descent.png'), fullPage: true });
  await page.close();
}

const CLEAN = { alg: 'stocBiO', noise: '0.3', epochs: '4', T: '10', Q: '10', eta: '0.005', alpha: '0.1', beta: '3000', batch: '500', seed: '0' };

function cleanCli(backend, out) {
  cli(['hyperclean', '--backend', backend, '--training_size', '2000', '--validation_size', '500', '--test_rows', '1000',
    '--noise_rate', CLEAN.noise, '--alg', CLEAN.alg, '--T', CLEAN.T, '--hessian_q', CLEAN.Q, '--eta', CLEAN.eta,
    '--inner_lr', CLEAN.alpha, '--outer_lr', CLEAN.beta, '--batch_size', CLEAN.batch, '--epochs', CLEAN.epochs,
    '--seed', CLEAN.seed, '--no_baselines', '--out', out]);
  // The records only (a results file also holds the down-weighted images and the summary).
  return jsonl(out).filter((r) => r.iter !== undefined);
}

async function cleanTest(browser) {
  console.log('\n-- hyper-cleaning');
  const { page, problems } = await openPage(browser, `${base}?panel=clean&autorun=0`);
  await waitPanel(page, 'clean', ['idle'], 60_000);
  await page.fill('#cl-epochs', CLEAN.epochs);
  await page.$eval('#cl-noise', (el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }, CLEAN.noise);
  const f0 = await frames(page);
  const t0 = Date.now();
  await page.click('#cl-run');
  // Pause after the first step, check that nothing moves, resume.
  await page.waitForFunction(() => (window.__bilevel.clean.records || []).length >= 2, null, { timeout: 300_000 }).catch(() => {});
  await page.click('#cl-pause');
  await waitPanel(page, 'clean', ['paused'], 120_000);
  const n1 = await page.evaluate(() => window.__bilevel.clean.records.length);
  await page.waitForTimeout(2000);
  const n2 = await page.evaluate(() => window.__bilevel.clean.records.length);
  const paused = await page.evaluate(() => window.__bilevel.clean.status);
  check('clean: Pause holds the run', paused === 'paused' && n1 === n2 && (await page.textContent('#cl-pause')).trim() === 'Resume',
    `status ${paused}, records ${n1} -> ${n2}`);
  await page.click('#cl-pause');
  const state = await waitPanel(page, 'clean', ['done', 'error'], 300_000);
  const f1 = await frames(page);
  check('clean: run finishes', state.status === 'done',
    `status ${state.status} after ${((Date.now() - t0) / 1000).toFixed(1)} s${state.error ? ` (${state.error})` : ''}`);
  const ref = cleanCli('cpu', resolve(args.out, 'clean_reference_cpu.jsonl'));
  const recs = state.records || [];
  check('clean: one record per iteration (and the start)', recs.length === ref.length && recs.length === Number(CLEAN.epochs) + 1,
    `${recs.length} records, CLI ${ref.length}`);
  let worst = { loss: 0, acc: 0, pr: 0, lam: 0 }; let countsOk = recs.length === ref.length;
  console.log('      iter   test acc page / cpu    precision page / cpu   recall page / cpu   val loss page / cpu');
  recs.forEach((r, k) => {
    const c = ref[k]; if (!c) return;
    worst.loss = Math.max(worst.loss, relAbs(r.val_loss, c.val_loss), relAbs(r.test_loss, c.test_loss));
    worst.acc = Math.max(worst.acc, Math.abs(r.test_acc - c.test_acc));
    worst.pr = Math.max(worst.pr, Math.abs(r.precision - c.precision), Math.abs(r.recall - c.recall));
    worst.lam = Math.max(worst.lam, r.iter ? relAbs(r.lambda_norm, c.lambda_norm) : Math.abs(r.lambda_norm - c.lambda_norm));
    countsOk = countsOk && JSON.stringify(r.oracle_counts) === JSON.stringify(c.oracle_counts) && r.iter === c.iter;
    console.log(`      ${String(r.iter).padStart(4)}   ${r.test_acc.toFixed(4)} / ${c.test_acc.toFixed(4)}     ${r.precision.toFixed(4)} / ${c.precision.toFixed(4)}      ${r.recall.toFixed(4)} / ${c.recall.toFixed(4)}    ${r.val_loss.toFixed(5)} / ${c.val_loss.toFixed(5)}`);
  });
  check('clean: oracle counts equal the CLI\'s exactly', countsOk);
  const some = recs.length > 1;
  check('clean: validation and test losses match the CPU (rel <= 1e-3)', some && worst.loss <= 1e-3, worst.loss.toExponential(3));
  check('clean: test accuracy matches (abs <= 0.003, 3 of 1,000 images)', some && worst.acc <= 0.003, worst.acc.toFixed(4));
  check('clean: precision and recall match (abs <= 0.01)', some && worst.pr <= 0.01, worst.pr.toFixed(4));
  check('clean: ‖λ‖ matches (rel <= 1e-3)', some && worst.lam <= 1e-3, worst.lam.toExponential(3));
  const last = recs[recs.length - 1];
  check('clean: the weights find corrupted labels (recall > 0.3 after the run)', last && last.recall > 0.3, last ? `recall ${last.recall}` : '');
  const weights = state.weights || [];
  check('clean: image weights shown', weights.length > 0 && weights.some((w) => w !== 0.5), `${weights.length} weights`);
  if (recs.length > 1) {
    metrics.clean_browser_s_per_iter = steadyPerIter(recs);
    metrics.clean_browser_first_iter_s = recs[1].time_s;
    const gpu = cleanCli('gpu', resolve(args.out, 'clean_native_gpu.jsonl'));
    metrics.clean_native_gpu_s_per_iter = steadyPerIter(gpu);
    metrics.clean_native_gpu_first_iter_s = gpu[1].time_s;
    metrics.clean_fps = (f1[0] - f0[0]) / ((f1[1] - f0[1]) / 1000);
    console.log(`      per iteration: browser (SwiftShader WebGPU) ${(1000 * metrics.clean_browser_s_per_iter).toFixed(1)} ms, native wgpu (lavapipe) ${(1000 * metrics.clean_native_gpu_s_per_iter).toFixed(1)} ms; ${metrics.clean_fps.toFixed(1)} frames/s while running`);
  }
  await page.screenshot({ path: resolve(args.out, 'clean.png'), fullPage: true });
  await page.click('#cl-reset');
  const after = await waitPanel(page, 'clean', ['idle'], 30_000);
  check('clean: Reset clears the run', after.status === 'idle' && after.records.length === 0
    && (await page.textContent('#cl-iter')).trim() === '–', `status ${after.status}, ${after.records.length} records`);
  check('clean: no console errors', problems.length === 0, problems.join(' | '));
  await page.close();
}

async function raceTest(browser) {
  console.log('\n-- race');
  const algs = args.raceAlgs.split(',');
  const { page, problems } = await openPage(browser, `${base}?panel=race&autorun=0`);
  await waitPanel(page, 'race', ['idle'], 60_000);
  await page.$$eval('#race-algs input', (els, want) => els.forEach((el) => { el.checked = want.includes(el.value); }), algs);
  await page.fill('#race-epochs', args.epochs);
  const f0 = await frames(page);
  const t0 = Date.now();
  await page.click('#race-run');
  const state = await waitPanel(page, 'race', ['done', 'error'], 300_000);
  const f1 = await frames(page);
  check('race: finishes', state.status === 'done',
    `status ${state.status} after ${((Date.now() - t0) / 1000).toFixed(1)} s${state.error ? ` (${state.error})` : ''}`);
  check('race: runs the chosen algorithms', JSON.stringify(state.algs) === JSON.stringify(algs), JSON.stringify(state.algs));
  for (const alg of algs) {
    const reference = readFileSync(resolve(args.referenceDir, `cpu_reference_${alg}.jsonl`), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const recs = (state.records || {})[alg] || [];
    const counts = recs.length === reference.length && recs.every((r, i) => JSON.stringify(r.oracle_counts) === JSON.stringify(reference[i].oracle_counts));
    check(`race ${alg}: oracle counts equal the CLI's exactly (${reference.length} iterations)`, counts,
      recs.length ? `last ${JSON.stringify(recs[recs.length - 1].oracle_counts)} vs ${JSON.stringify(reference[recs.length - 1]?.oracle_counts)}` : 'no records');
    let worst = 0;
    recs.forEach((r, i) => { if (reference[i]) worst = Math.max(worst, relAbs(r.outer_loss, reference[i].outer_loss), relAbs(r.exact_outer_loss, reference[i].exact_outer_loss)); });
    check(`race ${alg}: losses match the CPU (rel <= ${LOSS_TOL})`, recs.length > 0 && worst <= LOSS_TOL, worst.toExponential(3));
  }
  metrics.race_fps = (f1[0] - f0[0]) / ((f1[1] - f0[1]) / 1000);
  const sb = (state.records || {}).stocBiO;
  if (sb && sb.length) metrics.race_stocBiO_browser_s_per_iter = steadyPerIter(sb);
  console.log(`      ${metrics.race_fps.toFixed(1)} frames/s while racing`);
  check('race: no console errors', problems.length === 0, problems.join(' | '));
  await page.screenshot({ path: resolve(args.out, 'race.png'), fullPage: true });
  await page.close();
}

async function toyTest(browser, alg) {
  const refPath = resolve(args.referenceDir, `cpu_reference_${alg}.jsonl`);
  const reference = readFileSync(refPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const url = `${base}?alg=${encodeURIComponent(alg)}&${args.query}`;
  console.log(`\n-- toy ${alg}: ${url}`);
  const t0 = Date.now();
  const { page, problems } = await openPage(browser, url);
  const state = await waitForStatus(page, ['done', 'error', 'no-webgpu'], RUN_TIMEOUT_MS);
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  check(`${alg}: run finishes`, state.status === 'done',
    `status ${state.status} after ${secs} s${state.error ? ` (${state.error})` : ''}`);
  check(`${alg}: no console errors`, problems.length === 0, problems.join(' | '));
  const a = state.adapter;
  check(`${alg}: adapter shown`, !!a && (await page.textContent('#adapter')).trim().length > 1,
    a ? JSON.stringify(a) : 'none');

  const records = state.records || [];
  check(`${alg}: one record per iteration`,
    records.length === reference.length && records.every((r, i) => r.iter === reference[i].iter),
    `${records.length} records, reference ${reference.length}`);

  let worstH = 0; let worstHIter = 0; let worstL = 0; let worstLIter = 0; let worstE = 0;
  let complete = records.length === reference.length && records.length > 0;
  console.log('      iter   outer_loss gpu / cpu            rel     hypergrad rel L2   exact-hg rel L2   err vs exact gpu / cpu');
  records.forEach((r, i) => {
    const c = reference[i];
    if (!c || !r.hypergradient || !c.hypergradient) { complete = false; return; }
    const h = relL2(r.hypergradient, c.hypergradient);
    const l = relAbs(r.outer_loss, c.outer_loss);
    const e = relL2(r.exact_hypergradient, c.exact_hypergradient);
    if (!(h <= worstH)) { worstH = h; worstHIter = r.iter; }
    if (!(l <= worstL)) { worstL = l; worstLIter = r.iter; }
    if (!(e <= worstE)) worstE = e;
    console.log(`      ${String(r.iter).padStart(4)}   ${r.outer_loss.toFixed(7)} / ${c.outer_loss.toFixed(7)}   ${l.toExponential(2)}   ${h.toExponential(3)}          ${e.toExponential(3)}         ${r.hypergrad_rel_err.toExponential(2)} / ${c.hypergrad_rel_err.toExponential(2)}`);
  });
  check(`${alg}: hypergradient matches the CPU reference (rel L2 <= ${HYPERGRAD_TOL})`,
    complete && worstH <= HYPERGRAD_TOL,
    `worst ${worstH.toExponential(3)} at iteration ${worstHIter}`);
  check(`${alg}: outer loss matches the CPU reference (rel <= ${LOSS_TOL})`,
    complete && worstL <= LOSS_TOL,
    `worst ${worstL.toExponential(3)} at iteration ${worstLIter}`);
  // λ follows the same path, so the closed-form hypergradient at it agrees too.
  check(`${alg}: exact hypergradient at the GPU's λ matches (rel L2 <= ${HYPERGRAD_TOL})`,
    complete && worstE <= HYPERGRAD_TOL, `worst ${worstE.toExponential(3)}`);

  if (records.length) {
    metrics[`toy_${alg}_browser_s_per_iter`] = steadyPerIter(records);
    metrics[`toy_${alg}_browser_first_iter_s`] = records[0].time_s;
  }
  const shot = resolve(args.out, alg === 'stocBiO' ? 'toy.png' : `toy-${alg}.png`);
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`      screenshot: ${shot}`);
  await page.close();
}

async function controlsTest(browser) {
  console.log('\n-- controls');
  const { page, problems } = await openPage(browser, `${base}?autorun=0&epochs=3`);
  let state = await waitForStatus(page, ['idle', 'error', 'no-webgpu'], 60_000);
  check('controls: autorun=0 waits idle', state.status === 'idle', `status ${state.status}`);

  // A long run started from the form, with a different algorithm.
  await page.selectOption('#in-alg', 'AID-CG');
  await page.fill('#in-epochs', '500');
  await page.fill('#in-T', '3');
  await page.click('#run');
  await page.waitForFunction(() => window.__bilevel.records.length >= 2, null, { timeout: 60_000 });
  state = await page.evaluate(() => window.__bilevel);
  check('controls: Run starts the form settings',
    state.status === 'running' && state.config.alg === 'AID-CG' && state.config.epochs === 500
      && state.config.hyper.t === 3 && page.url().includes('alg=AID-CG'),
    `status ${state.status}, config ${JSON.stringify(state.config && state.config.hyper)}, url ${page.url()}`);

  await page.click('#pause');
  await waitForStatus(page, ['paused'], 10_000);
  const n1 = await page.evaluate(() => window.__bilevel.records.length);
  await page.waitForTimeout(1500);
  const n2 = await page.evaluate(() => window.__bilevel.records.length);
  const label = (await page.textContent('#pause')).trim();
  check('controls: Pause holds the run', n1 === n2 && label === 'Resume',
    `records ${n1} -> ${n2}, button "${label}"`);

  await page.click('#pause');
  let resumed = true;
  try {
    await page.waitForFunction((n) => window.__bilevel.records.length > n, n2, { timeout: 30_000 });
  } catch (e) { resumed = false; }
  check('controls: Resume continues', resumed
    && (await page.evaluate(() => window.__bilevel.status)) === 'running');

  await page.click('#reset');
  state = await waitForStatus(page, ['idle'], 10_000);
  const epochsField = await page.inputValue('#in-epochs');
  check('controls: Reset stops and clears', state.status === 'idle' && state.records.length === 0
    && epochsField === '3', `status ${state.status}, ${state.records.length} records, epochs field ${epochsField}`);

  await page.fill('#in-eta', '-1');
  await page.click('#run');
  const formError = (await page.textContent('#form-error')).trim();
  check('controls: invalid input is explained, not run',
    formError.includes('eta') && (await page.evaluate(() => window.__bilevel.status)) === 'idle',
    `"${formError}"`);
  check('controls: no console errors', problems.length === 0, problems.join(' | '));
  await page.close();
}

async function errorsTest(browser) {
  console.log('\n-- errors are shown on the page');
  for (const [name, query, expect] of [
    ['invalid address setting', 'epochs=abc', 'epochs'],
    ['diverging run', 'epochs=20&outer_lr=1e30', 'non-finite'],
  ]) {
    const { page } = await openPage(browser, `${base}?${query}`);
    const state = await waitForStatus(page, ['error', 'done'], 60_000);
    const visible = await page.isVisible('#error');
    const text = visible ? (await page.textContent('#error-text')).trim() : '';
    check(`errors: ${name} (?${query})`, state.status === 'error' && visible && text.includes(expect)
      && state.error === text, `status ${state.status}, shown: "${text}"`);
    await page.close();
  }
}

async function noWebgpuTest() {
  console.log('\n-- no WebGPU (Chromium without the WebGPU flags)');
  const browser = await launch(false);
  try {
    const { page, problems } = await openPage(browser, `${base}?epochs=3`);
    const state = await waitForStatus(page, ['no-webgpu', 'error', 'done'], 90_000);
    check('no-webgpu: status is no-webgpu', state.status === 'no-webgpu',
      `status ${state.status}, reason: ${state.error}`);
    const visible = await page.isVisible('#no-webgpu');
    const text = visible ? (await page.textContent('#no-webgpu')).replace(/\s+/g, ' ').trim() : '';
    check('no-webgpu: explanation visible', visible && text.includes('This page needs WebGPU')
      && text.includes('does not expose'), text.slice(0, 160));
    if (problems.length) console.log(`      (console: ${problems.join(' | ')})`);
    const shot = resolve(args.out, 'no-webgpu.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`      screenshot: ${shot}`);
  } finally {
    await browser.close();
  }
}

async function main() {
  const want = new Set(args.tests.split(','));
  const browser = await launch(true);
  try {
    if (want.has('landscape')) await landscapeTest(browser);
    if (want.has('clean')) await cleanTest(browser);
    if (want.has('race')) await raceTest(browser);
    if (want.has('toy')) {
      for (const alg of args.algs.split(',')) {
        await toyTest(browser, alg);
      }
    }
    if (want.has('controls')) await controlsTest(browser);
    if (want.has('errors')) await errorsTest(browser);
  } finally {
    await browser.close();
  }
  if (want.has('no-webgpu')) await noWebgpuTest();
}

try {
  await main();
} catch (e) {
  check('test harness', false, e && e.stack ? e.stack : String(e));
}
// Native wgpu (lavapipe) per-iteration time of the toy run, written by run.sh, beside the browser's.
try {
  const native = jsonl(resolve(args.referenceDir, 'native_gpu_stocBiO.jsonl'));
  metrics.toy_stocBiO_native_gpu_s_per_iter = steadyPerIter(native);
  metrics.toy_stocBiO_native_gpu_first_iter_s = native[0].time_s;
} catch (e) { /* not run */ }
for (const k of ['toy_stocBiO', 'clean']) {
  const b = metrics[`${k}_browser_s_per_iter`]; const n = metrics[`${k}_native_gpu_s_per_iter`];
  if (b && n) {
    metrics[`${k}_browser_over_native`] = b / n;
    console.log(`per-iteration time after the first, ${k}: browser ${(1000 * b).toFixed(1)} ms vs native wgpu ${(1000 * n).toFixed(1)} ms = ${(b / n).toFixed(2)}× (target ≤ 2×)`);
  }
}
writeFileSync(resolve(args.out, 'metrics.json'), `${JSON.stringify(metrics, null, 2)}\n`);
console.log(`metrics: ${resolve(args.out, 'metrics.json')}`);
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
