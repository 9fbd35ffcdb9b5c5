// Shared pieces of the browser tests: the real alliance binary on a free loopback port with
// a fresh store, a recording chat platform, a host page server, Standard Webhooks signing,
// Chromium through playwright-core, and the accessibility and layout checks.

import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const BINARY = process.env.ALLIANCE_BIN || path.join(ROOT, 'target/release/alliance');
export const CHROMIUM = '/usr/bin/chromium';
export const ADMIN_TOKEN = 'browser-test-admin-token-0123456789';

// Flags that keep Debian's Chromium off the network apart from the pages a test opens.
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** Waits until `check` returns a truthy value and returns it; throws `message` after `timeoutMs`. */
export async function waitFor(check, message, timeoutMs = 10000) {
  const started = Date.now();
  let last;
  while (Date.now() - started < timeoutMs) {
    last = await check();
    if (last) return last;
    await sleep(50);
  }
  throw new Error(`timed out after ${timeoutMs} ms: ${message}`);
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${server.address().port}`));
  });
}

function close(server) {
  server.closeAllConnections?.();
  return new Promise(resolve => server.close(() => resolve()));
}

async function freePort() {
  const server = http.createServer();
  const url = await listen(server);
  await close(server);
  return Number(new URL(url).port);
}

function readBody(request) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    request.on('data', chunk => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });
}

export function randomSecret() {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/** Signs `id.timestamp.body` per Standard Webhooks: `v1,<base64 HMAC-SHA256>`. */
export function sign(secret, id, timestamp, body) {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const mac = createHmac('sha256', key).update(`${id}.${timestamp}.`).update(body).digest('base64');
  return `v1,${mac}`;
}

/**
 * A minimal chat platform that records every invitation the service posts to
 * `/chats/{chat_id}/messages` and accepts it with 201.
 */
export async function startPlatform() {
  const messages = [];
  const server = http.createServer(async (request, response) => {
    const body = await readBody(request);
    let json = null;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      // Recorded as null; the test that needs the body fails on it.
    }
    messages.push({ path: request.url, headers: request.headers, body: json });
    response.writeHead(201, { 'Content-Type': 'application/json' });
    response.end('{}');
  });
  const url = await listen(server);
  return {
    url,
    messages,
    /** Waits for the invitation of `role` in chat `chatId` and returns its token. */
    tokenFor(chatId, role) {
      const wanted = `/chats/${encodeURIComponent(chatId)}/messages`;
      return waitFor(() => {
        const message = messages.find(m => m.path === wanted && m.body?.recipient?.role === role);
        return message?.body?.questionnaire?.token;
      }, `the ${role} invitation of chat ${chatId} to reach the platform`);
    },
    stop: () => close(server),
  };
}

/**
 * Starts `alliance serve` with a fresh data directory and known secrets.
 * `env` adds or overrides ALLIANCE_* settings.
 */
export async function startService({ platformUrl, env = {} }) {
  const port = await freePort();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'alliance-browser-'));
  const webhookSecret = randomSecret();
  if (!existsSync(BINARY)) {
    throw new Error(`the alliance binary is missing at ${BINARY}; run \`cargo build --release -p alliance\` or set ALLIANCE_BIN`);
  }

  const childEnv = environmentWithoutSettings();
  Object.assign(childEnv, {
    ALLIANCE_LISTEN: `127.0.0.1:${port}`,
    ALLIANCE_DATA_DIR: dataDir,
    ALLIANCE_SECRET_KEY: randomBytes(32).toString('base64'),
    ALLIANCE_WEBHOOK_SECRETS: webhookSecret,
    ALLIANCE_PLATFORM_URL: platformUrl,
    ALLIANCE_PLATFORM_TOKEN: 'browser-test-platform-token-0123456789',
    ALLIANCE_PLATFORM_SIGNING_SECRET: randomSecret(),
    ALLIANCE_ADMIN_TOKEN: ADMIN_TOKEN,
    RUST_LOG: 'warn',
    ...env,
  });

  const child = spawn(BINARY, ['serve'], { env: childEnv, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', chunk => {
    stderr += chunk;
  });
  const exited = new Promise(resolve => child.once('exit', code => resolve(code)));
  const url = `http://127.0.0.1:${port}`;

  const healthy = await Promise.race([
    waitFor(async () => {
      try {
        return (await fetch(`${url}/healthz`)).ok;
      } catch {
        return false;
      }
    }, 'the service to answer /healthz', 20000),
    exited.then(code => {
      throw new Error(`alliance serve exited with code ${code}:\n${stderr}`);
    }),
  ]);
  if (!healthy) throw new Error('the service did not start');

  return {
    url,
    webhookSecret,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Returns this process's environment without ALLIANCE_* settings, so a test sets every one. */
function environmentWithoutSettings() {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('ALLIANCE_')));
}

// The line `alliance demo` prints once the replay is done and the dashboard is served.
const DEMO_LOGIN_LINK = /one-time login link[^:]*: (http:\/\/127\.0\.0\.1:\d+\/report\/login\/[0-9a-f]+)/;

/**
 * Starts `alliance demo`: the 2022 study replayed through a fresh service and a simulated
 * platform on 127.0.0.1. Resolves once the demo prints its one-time dashboard login link. The
 * service then keeps serving until `stop()`, which sends SIGINT as Ctrl-C does and returns the
 * exit code. `env` adds or overrides ALLIANCE_* settings of the demo's service.
 */
export async function startDemo({ env = {}, timeoutMs = 300000 } = {}) {
  if (!existsSync(BINARY)) {
    throw new Error(`the alliance binary is missing at ${BINARY}; run \`cargo build --release -p alliance\` or set ALLIANCE_BIN`);
  }
  const childEnv = { ...environmentWithoutSettings(), RUST_LOG: 'warn', ...env };
  const child = spawn(BINARY, ['demo'], { env: childEnv, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', chunk => {
    stderr += chunk;
  });
  const exited = new Promise(resolve => child.once('exit', (code, signal) => resolve(code ?? signal)));

  let loginLink;
  try {
    loginLink = await Promise.race([
      waitFor(() => stderr.match(DEMO_LOGIN_LINK)?.[1], 'alliance demo to print its dashboard login link', timeoutMs),
      exited.then(code => {
        throw new Error(`alliance demo exited with ${code} before it served the dashboard:\n${stderr}`);
      }),
    ]);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }

  return {
    url: new URL(loginLink).origin,
    loginLink,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGINT');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
        await exited;
        clearTimeout(timer);
      }
      return exited;
    },
  };
}

/** Sends a signed chat-ended webhook and returns the HTTP status. */
export async function sendChatEnded(service, { chatId, parent = 'v-1', professional = 'n-1' }) {
  const body = JSON.stringify({
    type: 'chat.ended',
    data: {
      chat_id: chatId,
      ended_at: new Date().toISOString(),
      organization: 'GGD Testregio',
      locale: 'nl',
      parent: { participant_id: parent },
      professional: { participant_id: professional },
    },
  });
  const id = `msg_${chatId}_${randomBytes(4).toString('hex')}`;
  const timestamp = Math.floor(Date.now() / 1000);
  const response = await fetch(`${service.url}/webhooks/chat-ended`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      'webhook-id': id,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': sign(service.webhookSecret, id, timestamp, body),
    },
    body,
  });
  return response.status;
}

let chatCounter = 0;

/** Ends a new chat and returns the parent's and the professional's tokens. */
export async function newChat(service, platform, participants = {}) {
  chatCounter += 1;
  const chatId = participants.chatId || `chat-${process.pid}-${chatCounter}`;
  const status = await sendChatEnded(service, { chatId, ...participants });
  if (status !== 202) throw new Error(`the chat-ended webhook for ${chatId} got ${status}, expected 202`);
  return {
    chatId,
    parent: await platform.tokenFor(chatId, 'parent'),
    professional: await platform.tokenFor(chatId, 'professional'),
  };
}

/** Reads a questionnaire through the API, as the plugin does. */
export async function readQuestionnaire(service, token) {
  const response = await fetch(`${service.url}/api/questionnaires/${token}`);
  return { status: response.status, body: await response.json() };
}

/** Reads the report through the admin API. */
export async function readReport(service) {
  const response = await fetch(`${service.url}/api/admin/report`, {
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  if (!response.ok) throw new Error(`GET /api/admin/report returned ${response.status}`);
  return response.json();
}

/**
 * Serves host pages from its own origin: `GET /embed?token=…` is a chat view with aggressive
 * CSS of its own that embeds the plugin from `serviceUrl`. `routes` adds further pages.
 */
export async function startHost(routes = {}) {
  const host = { serviceUrl: '' };
  const server = http.createServer((request, response) => {
    const url = new URL(request.url, 'http://host.invalid');
    const route = { '/embed': embedPage, ...routes }[url.pathname];
    if (!route) {
      response.writeHead(url.pathname === '/favicon.ico' ? 204 : 404);
      response.end();
      return;
    }
    const { type, body } = route(url, host);
    response.writeHead(200, { 'Content-Type': type, 'Cache-Control': 'no-store' });
    response.end(body);
  });
  host.url = await listen(server);
  host.stop = () => close(server);
  return host;
}

const escapeHtml = value => String(value).replace(/[&<>"']/g, c => `&#${c.charCodeAt(0)};`);

// A host page that tries hard to break the plugin: inherited fonts, spacing and transforms,
// global resets with !important, and rules aimed at the plugin's own tag names.
const HOSTILE_CSS = `
html { font-size: 10px; color-scheme: dark; }
*, *::before, *::after { box-sizing: content-box !important; margin: 0 !important; padding: 0 !important; }
body { background: #222; color: #f5f5f5; font: italic 700 1.3rem/1 Georgia, serif; text-transform: uppercase;
  letter-spacing: .2em; word-spacing: .5em; text-indent: 3em; text-align: right; white-space: pre;
  cursor: crosshair; direction: ltr; }
input, label, fieldset, legend, button, textarea, p, h1, h2 { all: unset !important; display: none !important; }
[hidden] { display: block !important; }
:focus, :focus-visible { outline: none !important; }
alliance-questionnaire { max-width: 40rem; border: 3px solid #ff0; }
main { display: block; }
`;

function embedPage(url, host) {
  const token = escapeHtml(url.searchParams.get('token') || '');
  const lang = url.searchParams.get('lang') === 'en' ? 'en' : 'nl';
  const body = `<!doctype html>
<html lang="${lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Chat</title>
<style>${HOSTILE_CSS}</style>
<script type="module" src="${host.serviceUrl}/widget/alliance-questionnaire.js"></script>
</head>
<body>
<main>
<alliance-questionnaire token="${token}" lang="${lang}" api-base="${host.serviceUrl}"></alliance-questionnaire>
</main>
</body>
</html>`;
  return { type: 'text/html; charset=utf-8', body };
}

export function launchBrowser() {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium is missing at ${CHROMIUM}; install it with \`apt-get install -y chromium\``);
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

/**
 * Opens a page that records console errors, page errors and CSP violations.
 * The violation listener is injected by the browser, so the page's CSP does not block it.
 */
export async function openPage(context, url) {
  const page = await context.newPage();
  page.log = [];
  page.on('console', message => {
    if (message.type() === 'error' || message.type() === 'warning') page.log.push(`${message.type()}: ${message.text()}`);
  });
  page.on('pageerror', error => page.log.push(`pageerror: ${error.message}`));
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', event => {
      window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || 'inline'}`);
    });
  });
  await page.goto(url);
  return page;
}

/** Returns every CSP violation the page reported, from the console and from the DOM event. */
export async function cspViolations(page, frame = page) {
  const fromEvents = await frame.evaluate(() => window.__cspViolations || []);
  const fromConsole = page.log.filter(line => /Content Security Policy|Refused to/i.test(line));
  return [...fromEvents, ...fromConsole];
}

/**
 * Runs axe-core for WCAG 2.0 and 2.1 A and AA in a page or frame and returns the violations
 * in a readable form.
 */
export async function axeViolations(page) {
  const loaded = await page.evaluate(() => typeof window.axe === 'object');
  if (!loaded) await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
    });
    return result.violations.map(v => `${v.id}: ${v.help} at ${v.nodes.map(n => JSON.stringify(n.target)).join(', ')}`);
  });
  return violations;
}

/**
 * Returns what sticks out past the viewport's right edge: the document's scroll width and
 * every element, in the light DOM or an open shadow root, whose box ends past it.
 */
export function horizontalOverflow(page) {
  return page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const offenders = [];
    const walk = root => {
      for (const element of root.querySelectorAll('*')) {
        const box = element.getBoundingClientRect();
        if (box.width > 1 && box.height > 1 && box.right > width + 0.5) {
          offenders.push(`${element.tagName.toLowerCase()}${element.id ? `#${element.id}` : ''}.${element.className} right=${Math.round(box.right)}`);
        }
        if (element.shadowRoot) walk(element.shadowRoot);
      }
    };
    walk(document);
    return { scrollWidth: document.documentElement.scrollWidth, clientWidth: width, offenders: offenders.slice(0, 5) };
  });
}

/** Returns the radio options and buttons inside the plugin whose target is under 44 × 44 CSS px. */
export function smallTargets(page) {
  return page.evaluate(() => {
    const small = [];
    let count = 0;
    for (const host of document.querySelectorAll('alliance-questionnaire')) {
      const root = host.shadowRoot;
      const targets = [
        ...[...root.querySelectorAll('input[type=radio]')].map(input => input.closest('label')),
        ...root.querySelectorAll('button'),
      ];
      for (const target of targets) {
        const box = target.getBoundingClientRect();
        count += 1;
        if (box.width < 44 || box.height < 44) small.push(`${target.textContent.trim()} ${box.width.toFixed(1)}×${box.height.toFixed(1)}`);
      }
    }
    return { count, small };
  });
}

/** Sets the browser's default font size, as a reader's text-size setting does (16 px is 100%). */
export async function setTextSize(page, pixels) {
  // One session per page, kept open: detaching a DevTools session ends the network
  // emulation of context.setOffline() without firing the page's `online` event.
  page.fontSession ??= await page.context().newCDPSession(page);
  await page.fontSession.send('Page.setFontSizes', { fontSizes: { standard: pixels, fixed: Math.round(pixels * 0.8125) } });
}

/**
 * Checks one state of the page against the accessibility bars: no axe violation, no CSP
 * violation, options and buttons at least 44 × 44 px, and no horizontal scroll at 320 px
 * wide, at 100% and at 200% text size. Restores the viewport and text size afterwards.
 */
export async function assertAccessibleState(assert, page, state, frame = page) {
  assert.deepEqual(await axeViolations(frame), [], `axe violations in state "${state}"`);
  assert.deepEqual(await cspViolations(page, frame), [], `CSP violations in state "${state}"`);

  const targets = await smallTargets(frame);
  assert.deepEqual(targets.small, [], `targets under 44×44 px in state "${state}"`);

  const viewport = page.viewportSize();
  for (const textSize of [16, 32]) {
    await page.setViewportSize({ width: 320, height: 640 });
    await setTextSize(page, textSize);
    await page.evaluate(() => new Promise(requestAnimationFrame));
    const overflow = await horizontalOverflow(frame);
    const label = `in state "${state}" at 320 px and ${textSize * 6.25}% text size`;
    assert.ok(overflow.scrollWidth <= overflow.clientWidth, `horizontal scroll ${label}: ${JSON.stringify(overflow)}`);
    assert.deepEqual(overflow.offenders, [], `elements past the right edge ${label}`);
  }
  await setTextSize(page, 16);
  await page.setViewportSize(viewport);
}

/** Returns the element that has focus, looking through open shadow roots. */
export function focused(page) {
  return page.evaluate(() => {
    let element = document.activeElement;
    while (element?.shadowRoot?.activeElement) element = element.shadowRoot.activeElement;
    if (!element) return {};
    return {
      tag: element.tagName.toLowerCase(),
      type: element.type || '',
      name: element.name || '',
      value: element.value ?? '',
      checked: Boolean(element.checked),
      id: element.id,
      text: element.textContent.trim(),
      action: element.dataset?.action || '',
    };
  });
}
