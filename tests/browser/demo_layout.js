// Drives the demo page in the system Chromium with playwright-core and reports what it
// shows: a turn watched live and the same session reopened must have the same layout;
// Markdown is rendered and sanitized; messages carry times; tool steps are collapsible
// with their arguments; rename and delete work. Run by test_browser_layout.py.
//
// Usage: node demo_layout.js URL ARTIFACT_DIR. Prints one JSON line {"result": {...}}.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.RUNTIME_CHROMIUM || '/usr/bin/chromium';
const WAIT_MS = 60_000;
const [url, artifactDir] = process.argv.slice(2);

// The layout of the transcript: per turn, the user bubble and the assistant bubble's
// children (kind + what they show), so live and reopened can be compared exactly.
function layout() {
  return Array.from(document.querySelectorAll('#transcript .turn'), (turn) => ({
    state: turn.dataset.state,
    status: turn.querySelector('.turn-status').textContent,
    user: turn.querySelector('.bubble.user .body')?.textContent,
    userTime: turn.querySelector('.bubble.user .stamp')?.textContent !== '',
    parts: Array.from(turn.querySelector('.bubble.assistant').children, (c) => {
      if (c.matches('.text')) return { kind: 'text', raw: c.dataset.raw, html: c.innerHTML };
      if (c.matches('details.tool')) {
        return {
          kind: 'tool',
          state: c.dataset.state,
          summary: c.querySelector('summary').textContent.replace(/ · [0-9.]+ s$/, ''),
          args: JSON.parse(c.querySelector('pre.args').textContent),
          result: c.querySelector('pre.result')?.textContent,
        };
      }
      if (c.matches('time.stamp')) return { kind: 'time', shown: c.textContent !== '' };
      return { kind: c.className };
    }),
  }));
}

function sanitizerReport() {
  const text = document.querySelector('#transcript .turn:last-child .text:last-of-type');
  return {
    h1: text?.querySelector('h1')?.textContent,
    strong: text?.querySelector('strong')?.textContent,
    code: text?.querySelector('code')?.textContent,
    listItems: text ? text.querySelectorAll('li').length : 0,
    tableCells: text ? text.querySelectorAll('td').length : 0,
    scripts: document.querySelectorAll('#transcript script').length,
    onerror: document.querySelectorAll('#transcript [onerror]').length,
    xss: window.__xss === undefined ? null : window.__xss,
  };
}

async function main() {
  fs.mkdirSync(artifactDir, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'runtime-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
    viewport: { width: 1200, height: 900 },
  });
  const result = {};
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on('pageerror', (err) => process.stderr.write(`pageerror: ${err}\n`));
    await page.goto(url);
    await page.click('#new-session');
    await page.fill('#message', 'reason=1 tokens=4 tool_every=2 md=1');
    await page.click('#send');
    await page.waitForSelector('#transcript .turn[data-ended="true"]', { timeout: WAIT_MS });
    await page.waitForTimeout(100); // one animation frame for the last Markdown render
    result.live = await page.evaluate(layout);
    result.sanitizer = await page.evaluate(sanitizerReport);
    result.sessionId = await page.evaluate(() => window.runtimeDemo.state.sessionId);
    result.liveShot = path.join(artifactDir, 'layout-live.png');
    await page.screenshot({ path: result.liveShot, fullPage: true });

    await page.goto(`${url}?session=${result.sessionId}`); // reopened from storage
    await page.waitForSelector('#transcript .turn .text');
    result.reopened = await page.evaluate(layout);
    await page.click('#transcript details.tool summary'); // expand the first tool step
    result.expanded = await page.evaluate(() => document.querySelector('details.tool').open);
    result.reopenedShot = path.join(artifactDir, 'layout-reopened.png');
    await page.screenshot({ path: result.reopenedShot, fullPage: true });

    page.once('dialog', (d) => d.accept('Renamed from the page'));
    await page.click('#rename');
    await page.waitForFunction(
      () => document.querySelector('#title').textContent === 'Renamed from the page',
    );
    await page.waitForFunction(
      () => document.querySelector('#sessions li.active')?.textContent.includes('Renamed'),
    );
    result.renamedInList = true;

    page.once('dialog', (d) => d.accept());
    await page.click('#delete');
    await page.waitForFunction(
      (sid) => !document.querySelector(`#sessions li[data-session-id="${sid}"]`)
        && document.querySelector('#title').textContent === 'New session',
      result.sessionId,
    );
    result.deletedStatus = await page.evaluate(() => document.querySelector('#status').textContent);
    result.afterDeleteShot = path.join(artifactDir, 'layout-after-delete.png');
    await page.screenshot({ path: result.afterDeleteShot, fullPage: true });
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  process.stdout.write(`${JSON.stringify({ result })}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
