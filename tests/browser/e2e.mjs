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
// Ends with "N passed, M failed"; exit status 1 if anything failed.

import { readFileSync, mkdirSync } from 'node:fs';
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
    out: 'target/browser', chromium: '/usr/bin/chromium',
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
  const browser = await launch(true);
  try {
    for (const alg of args.algs.split(',')) {
      await toyTest(browser, alg);
    }
    await controlsTest(browser);
    await errorsTest(browser);
  } finally {
    await browser.close();
  }
  await noWebgpuTest();
}

try {
  await main();
} catch (e) {
  check('test harness', false, e && e.stack ? e.stack : String(e));
}
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
