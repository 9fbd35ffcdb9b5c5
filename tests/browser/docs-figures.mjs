// Makes the figures in docs/. It takes screenshots of the parent view at 360 px and of the
// nurse's console. It measures the gzipped size of the plugin's JavaScript and CSS as the
// server sends them, and the first paint of the hosted questionnaire in headless Chromium.
//
// Run from the repository root after `cargo build --release -p alliance`:
//   node tests/browser/docs-figures.mjs            # screenshots and measurements
//   node tests/browser/docs-figures.mjs --no-screenshots

import http from 'node:http';
import path from 'node:path';
import { gzipSync } from 'node:zlib';

import { ROOT, launchBrowser, newChat, openPage, startHost, startPlatform, startService, waitFor } from './harness.mjs';

const PAINT_RUNS = 20;
const takeScreenshots = !process.argv.includes('--no-screenshots');

/** Fetches `url` with `Accept-Encoding: gzip` and returns the bytes on the wire and the encoding. */
function wireSize(url) {
  return new Promise((resolve, reject) => {
    http.get(url, { headers: { 'Accept-Encoding': 'gzip' } }, response => {
      let bytes = 0;
      let body = Buffer.alloc(0);
      response.on('data', chunk => {
        bytes += chunk.length;
        body = Buffer.concat([body, chunk]);
      });
      response.on('end', () => resolve({ bytes, encoding: response.headers['content-encoding'] || 'identity', body }));
      response.on('error', reject);
    }).on('error', reject);
  });
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

// Records the first animation frame in which the plugin shows its first item, in ms since
// navigation start. Injected by the browser, so the page's CSP does not apply.
function recordFormFrame() {
  const check = () => {
    const root = document.querySelector('alliance-questionnaire')?.shadowRoot;
    if (root?.querySelector('fieldset')) window.__formFrame = performance.now();
    else requestAnimationFrame(check);
  };
  requestAnimationFrame(check);
}

async function measurePaint(browser, service, token) {
  const firstPaint = [];
  const firstContentfulPaint = [];
  const formShown = [];
  for (let run = 0; run < PAINT_RUNS; run++) {
    // A new context per run has an empty cache, as a parent opening the link for the first time.
    const context = await browser.newContext({ viewport: { width: 360, height: 740 } });
    const page = await context.newPage();
    await page.addInitScript(recordFormFrame);
    await page.goto(`${service.url}/q/${token}`);
    const times = await waitFor(
      () =>
        page.evaluate(() => {
          const paints = Object.fromEntries(performance.getEntriesByType('paint').map(entry => [entry.name, entry.startTime]));
          return window.__formFrame && paints['first-contentful-paint'] ? { ...paints, form: window.__formFrame } : null;
        }),
      'paint timings',
    );
    firstPaint.push(times['first-paint']);
    firstContentfulPaint.push(times['first-contentful-paint']);
    formShown.push(times.form);
    await context.close();
  }
  return { firstPaint, firstContentfulPaint, formShown };
}

async function screenshots(browser, service, platform, chatwoot) {
  const chat = await newChat(service, platform, { chatId: '5001', professional: 'n-31' });

  const parentContext = await browser.newContext({ viewport: { width: 360, height: 1100 } });
  const parent = await openPage(parentContext, `${service.url}/q/${chat.parent}`);
  await parent.getByRole('heading', { name: 'Hoe vond je de chat?' }).waitFor();
  for (const [number, rating] of [[1, 'good'], [2, 'sufficient']]) {
    await parent.locator(`alliance-questionnaire #item-${number} label`).filter({ has: parent.locator(`input[value="${rating}"]`) }).click();
  }
  await parent.screenshot({ path: path.join(ROOT, 'docs/parent-360.png') });
  await parentContext.close();

  const nurseContext = await browser.newContext({ viewport: { width: 400, height: 900 } });
  const nursePage = await openPage(nurseContext, `${service.url}/q/${chat.professional}`);
  await nursePage.getByText('Vragenlijst in je chatconsole').click();
  const code = (await nursePage.locator('.console-code code').textContent()).trim();
  const page = await openPage(nurseContext, `${chatwoot.url}/chatwoot`);
  const frame = await waitFor(() => page.frame({ name: 'console' }), 'the console frame');
  await frame.getByLabel('Je persoonlijke consolecode').fill(code);
  await frame.getByLabel('Je persoonlijke consolecode').press('Enter');
  await frame.getByRole('heading', { name: 'Hoe ging de chat?' }).waitFor();
  await frame.locator('alliance-questionnaire #item-1 label').filter({ has: frame.locator('input[value="good"]') }).click();
  await page.screenshot({ path: path.join(ROOT, 'docs/console.png') });
  await nurseContext.close();
}

// The console page framed the way Chatwoot frames a Dashboard App, with conversation 5001 open.
function chatwootPage(url, host) {
  const body = `<!doctype html><html lang="nl"><head><meta charset="utf-8"><title>Chatwoot</title>
<style>body { margin: 0; } iframe { border: 0; width: 100%; height: 100vh; display: block; }</style></head>
<body><iframe name="console" title="Vragenlijst" src="${host.serviceUrl}/console/chatwoot"></iframe>
<script>
const frame = document.querySelector('iframe');
window.addEventListener('message', event => {
  if (event.data === 'chatwoot-dashboard-app:fetch-info') {
    frame.contentWindow.postMessage(JSON.stringify({ event: 'appContext', data: { conversation: { id: 5001 } } }), new URL(frame.src).origin);
  }
});
</script></body></html>`;
  return { type: 'text/html; charset=utf-8', body };
}

const platform = await startPlatform();
const chatwoot = await startHost({ '/chatwoot': chatwootPage });
const service = await startService({ platformUrl: platform.url, env: { ALLIANCE_PLATFORM_ORIGINS: chatwoot.url } });
chatwoot.serviceUrl = service.url;
const browser = await launchBrowser();
try {
  const script = await wireSize(`${service.url}/widget/alliance-questionnaire.js?v=1`);
  const style = await wireSize(`${service.url}/widget/page.css?v=1`);
  const best = async asset => gzipSync(await (await fetch(`${service.url}/widget/${asset}`)).arrayBuffer(), { level: 9 }).length;
  console.log(`served: alliance-questionnaire.js ${script.bytes} B (${script.encoding}), page.css ${style.bytes} B (${style.encoding}), together ${script.bytes + style.bytes} B`);
  console.log(`gzip -9 of the same files: ${await best('alliance-questionnaire.js')} B + ${await best('page.css')} B`);

  const chat = await newChat(service, platform);
  const paint = await measurePaint(browser, service, chat.parent);
  const line = (name, values) => `${name}: median ${median(values).toFixed(1)} ms, max ${Math.max(...values).toFixed(1)} ms`;
  console.log(`hosted page, ${PAINT_RUNS} loads with an empty cache, 360 px wide:`);
  console.log(`  ${line('first-paint', paint.firstPaint)}`);
  console.log(`  ${line('first-contentful-paint', paint.firstContentfulPaint)}`);
  console.log(`  ${line('first frame with the items', paint.formShown)}`);

  if (takeScreenshots) {
    await screenshots(browser, service, platform, chatwoot);
    console.log('wrote docs/parent-360.png and docs/console.png');
  }
} finally {
  await browser.close();
  await service.stop();
  await platform.stop();
  await chatwoot.stop();
}
