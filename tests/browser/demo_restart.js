// Drives the demo page in the system Chromium (Debian package `chromium`) with
// playwright-core: no browser download. Run by tests/browser/test_browser_demo.py,
// which owns the runtime server and restarts it when asked.
//
// Protocol: one JSON object per line. This script writes {"need": "restart", "mode":
// "term"|"kill"} on stdout and waits for a line on stdin once the server is back; it
// writes {"result": {...}} per scenario, {"log": ...} lines for the browser console,
// and exits 0 (or 1 with {"fatal": ...}).
//
// Usage: node demo_restart.js URL ARTIFACT_DIR SCENARIO... (SCENARIO: term | kill)
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.RUNTIME_CHROMIUM || '/usr/bin/chromium';
const TOKENS = 60;
const RESTART_AT = 8; // restart the server once this many tokens are on the page
const WAIT_MS = 90_000;

const [url, artifactDir, ...scenarios] = process.argv.slice(2);
const stdinLines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

function say(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

async function ask(obj) {
  say(obj);
  const { value, done } = await stdinLines.next();
  if (done) throw new Error('the test runner closed stdin');
  return value;
}

function tokenText(i) {
  return `w${String(i).padStart(3, '0')} `;
}

async function runScenario(page, mode) {
  await page.click('#new-session');
  await page.waitForFunction(() => document.querySelector('#title').textContent === 'New session');
  await page.fill('#message', `tokens=${TOKENS} delay=0.05`);
  await page.click('#send');
  const turn = page.locator('#transcript .turn').last();
  await turn.waitFor({ timeout: WAIT_MS });
  const streamId = await turn.getAttribute('data-stream-id');
  // Mid-stream: some tokens are on the page, the turn is still running.
  await page.waitForFunction(
    ([sid, marker]) => {
      const node = document.querySelector(`.turn[data-stream-id="${sid}"]`);
      return node !== null && node.textContent.includes(marker);
    },
    [streamId, tokenText(RESTART_AT)],
    { timeout: WAIT_MS },
  );
  // The raw streamed text (the page shows it rendered as Markdown).
  const beforeRestart = await turn.locator('.text').evaluateAll((els) => els.map((e) => e.dataset.raw));
  await ask({ need: 'restart', mode, streamId });
  // The page reconnects on its own (EventSource + Last-Event-ID) and gets to the end
  // (or its EventSource gives up, which the test then reports).
  await page.waitForFunction(
    (sid) => {
      const node = document.querySelector(`.turn[data-stream-id="${sid}"]`);
      return node?.dataset.ended === 'true' || node?.dataset.state === 'closed';
    },
    streamId,
    { timeout: WAIT_MS },
  );
  const shot = path.join(artifactDir, `demo-${mode}.png`);
  await page.screenshot({ path: shot, fullPage: true });
  const state = await page.evaluate((sid) => {
    const node = document.querySelector(`.turn[data-stream-id="${sid}"]`);
    const demo = window.runtimeDemo;
    return {
      turnState: node.dataset.state,
      reconnects: Number(node.dataset.reconnects || 0),
      statusLine: node.querySelector('.turn-status').textContent,
      texts: Array.from(node.querySelectorAll('.text'), (el) => el.dataset.raw),
      seqs: demo.events.filter((e) => e.streamId === sid).map((e) => e.seq),
      types: demo.events.filter((e) => e.streamId === sid).map((e) => e.type),
      anomalies: demo.anomalies.filter((a) => a.streamId === sid),
      badge: document.querySelector('#conn').textContent,
    };
  }, streamId);
  say({ result: { mode, streamId, screenshot: shot, beforeRestart: beforeRestart.join(''), ...state } });
}

async function main() {
  fs.mkdirSync(artifactDir, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'runtime-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1200, height: 800 },
  });
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on('console', (msg) => say({ log: `console.${msg.type()}: ${msg.text()}` }));
    page.on('pageerror', (err) => say({ log: `pageerror: ${err}` }));
    await page.goto(url);
    for (const mode of scenarios) {
      try {
        await runScenario(page, mode);
      } catch (err) {
        await page.screenshot({ path: path.join(artifactDir, `demo-${mode}-failed.png`) });
        throw err;
      }
    }
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    say({ fatal: String(err && err.stack ? err.stack : err) });
    process.exit(1);
  },
);
