// The nurse's console: the console code on her questionnaire page, the code exchange API,
// and the Chatwoot Dashboard App page inside a simulated Chatwoot page on another origin.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  assertAccessibleState,
  focused,
  launchBrowser,
  newChat,
  openPage,
  readQuestionnaire,
  startHost,
  startPlatform,
  startService,
  waitFor,
} from './harness.mjs';

const TEST_TIMEOUT_MS = 90000;
const CODE_PATTERN = /^[0-9a-f]{4}(-[0-9a-f]{4}){7}$/;
// The longest chat id the chat-ended webhook accepts.
const LONGEST_CHAT_ID = 'c'.repeat(256);

// A Chatwoot page with the console as Dashboard App. It answers the app's request for
// context with `conversation`; with `intruder` it also frames a page from another origin
// that keeps sending a forged appContext to the console.
function chatwootPage(url, host) {
  const conversation = Number(url.searchParams.get('conversation'));
  const intruder = url.searchParams.get('intruder');
  const intruderFrame = intruder ? `<iframe title="Advertentie" src="${intruder}/intruder"></iframe>` : '';
  const body = `<!doctype html>
<html lang="nl">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Chatwoot</title>
<style>body { margin: 0; } iframe { border: 0; width: 100%; height: 90vh; display: block; }</style>
</head>
<body>
<main>
<iframe name="console" title="Vragenlijst" src="${host.serviceUrl}/console/chatwoot"></iframe>
${intruderFrame}
</main>
<script>
const context = { event: 'appContext', data: { conversation: { id: ${conversation} }, contact: { id: 1 }, currentAgent: { id: 17 } } };
const frame = document.querySelector('iframe[name=console]');
window.addEventListener('message', event => {
  if (event.source === frame.contentWindow && event.data === 'chatwoot-dashboard-app:fetch-info') {
    frame.contentWindow.postMessage(JSON.stringify(context), new URL(frame.src).origin);
  }
});
</script>
</body>
</html>`;
  return { type: 'text/html; charset=utf-8', body };
}

// Sends a forged appContext for conversation 4713 to the console frame every 100 ms.
function intruderPage() {
  const body = `<!doctype html><html lang="nl"><head><meta charset="utf-8"><title>Advertentie</title></head><body>
<script>
const forged = JSON.stringify({ event: 'appContext', data: { conversation: { id: 4713 } } });
setInterval(() => parent.frames.console.postMessage(forged, '*'), 100);
</script></body></html>`;
  return { type: 'text/html; charset=utf-8', body };
}

let browser;
let platform;
let chatwoot;
let intruder;
let service;
const chats = {};

before(async () => {
  platform = await startPlatform();
  chatwoot = await startHost({ '/chatwoot': chatwootPage });
  intruder = await startHost({ '/chatwoot': chatwootPage, '/intruder': intruderPage });
  service = await startService({ platformUrl: platform.url, env: { ALLIANCE_PLATFORM_ORIGINS: chatwoot.url } });
  chatwoot.serviceUrl = service.url;
  intruder.serviceUrl = service.url;
  browser = await launchBrowser();

  // Nurse n-17 had conversations 4711 and 4713, nurse n-18 had 4712.
  chats[4711] = await newChat(service, platform, { chatId: '4711', professional: 'n-17' });
  chats[4712] = await newChat(service, platform, { chatId: '4712', professional: 'n-18' });
  chats[4713] = await newChat(service, platform, { chatId: '4713', professional: 'n-17' });
  chats.longest = await newChat(service, platform, { chatId: LONGEST_CHAT_ID, professional: 'n-17' });
});

after(async () => {
  await browser?.close();
  await service?.stop();
  await platform?.stop();
  await chatwoot?.stop();
  await intruder?.stop();
});

/** Opens a nurse's questionnaire page and returns the console code it shows. */
async function consoleCodeOn(context, token) {
  const page = await openPage(context, `${service.url}/q/${token}`);
  await page.getByText('Vragenlijst in je chatconsole').click();
  const code = (await page.locator('.console-code code').textContent()).trim();
  return { page, code };
}

function exchange(body) {
  return fetch(`${service.url}/api/console/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
}

const codes = {};

describe('console code', { timeout: TEST_TIMEOUT_MS }, () => {
  it('is shown on the nurse page only', async () => {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const first = await consoleCodeOn(context, chats[4711].professional);
    assert.match(first.code, CODE_PATTERN);
    await assertAccessibleState(assert, first.page, 'nurse page with console code open');
    codes['n-17'] = first.code;

    assert.equal((await consoleCodeOn(context, chats[4713].professional)).code, codes['n-17'], 'one code per nurse');
    codes['n-18'] = (await consoleCodeOn(context, chats[4712].professional)).code;
    assert.notEqual(codes['n-18'], codes['n-17']);

    const parent = await openPage(context, `${service.url}/q/${chats[4711].parent}`);
    await parent.getByRole('heading', { name: 'Hoe vond je de chat?' }).waitFor();
    assert.equal(await parent.locator('.console-code').count(), 0, 'no console code on the parent page');
    await context.close();
  });

  it('gets a token only for the nurse of the conversation', async () => {
    const cases = [
      [{ conversation_id: '4711' }, 422, 'without a code'],
      [{ code: codes['n-17'] }, 422, 'without a conversation'],
      [{ code: 'not-a-code', conversation_id: '4711' }, 422, 'with a malformed code'],
      [{ code: codes['n-18'], conversation_id: '4711' }, 404, "with a colleague's code"],
      [{ code: '0'.repeat(32), conversation_id: '4711' }, 404, 'with a made-up code'],
      [{ code: codes['n-17'], conversation_id: '9999' }, 404, 'for an unknown conversation'],
      [{ code: codes['n-17'], conversation_id: `${LONGEST_CHAT_ID}x` }, 422, 'for an id longer than any chat id'],
    ];
    for (const [body, status, label] of cases) {
      assert.equal((await exchange(body)).status, status, label);
    }

    const response = await exchange({ code: codes['n-17'].toUpperCase(), conversation_id: 4711 });
    assert.equal(response.status, 200);
    assert.equal((await response.json()).token, chats[4711].professional);
    const other = await exchange({ code: codes['n-17'], conversation_id: '4713' });
    assert.equal((await other.json()).token, chats[4713].professional);
    const longest = await exchange({ code: codes['n-17'], conversation_id: LONGEST_CHAT_ID });
    assert.equal(longest.status, 200, 'the longest chat id the webhook accepts');
    assert.equal((await longest.json()).token, chats.longest.professional);
  });
});

describe('Chatwoot Dashboard App page', { timeout: TEST_TIMEOUT_MS }, () => {
  it('completes the questionnaire by keyboard after pasting the code once', async () => {
    const context = await browser.newContext({ viewport: { width: 400, height: 900 } });
    const page = await openPage(context, `${chatwoot.url}/chatwoot?conversation=4711`);
    const frame = await waitFor(() => page.frame({ name: 'console' }), 'the console frame');
    const codeField = frame.getByLabel('Je persoonlijke consolecode');
    await codeField.waitFor();
    await assertAccessibleState(assert, page, 'console asks for the code', frame);

    await codeField.fill('1234');
    await codeField.press('Enter');
    await frame.getByText('Deze code klopt niet.').waitFor();
    assert.equal((await focused(frame)).id, 'console-code', 'focus stays on the code field');
    await assertAccessibleState(assert, page, 'console rejects a malformed code', frame);

    await frame.getByLabel('Je persoonlijke consolecode').fill(codes['n-17']);
    await frame.getByLabel('Je persoonlijke consolecode').press('Enter');
    await frame.getByRole('heading', { name: 'Hoe ging de chat?', exact: true }).waitFor();
    await assertAccessibleState(assert, page, 'console shows the questionnaire', frame);

    for (let number = 1; number <= 11; number++) {
      for (let presses = 0; (await focused(frame)).name !== `q${number}`; presses++) {
        assert.ok(presses < 12, `item ${number} reached by Tab`);
        await page.keyboard.press('Tab');
      }
      await page.keyboard.press('ArrowDown');
    }
    for (let presses = 0; (await focused(frame)).action !== 'submit'; presses++) {
      assert.ok(presses < 12, 'submit button reached by Tab');
      await page.keyboard.press('Tab');
    }
    await page.keyboard.press('Enter');
    await frame.getByRole('heading', { name: 'Bedankt!', exact: true }).waitFor();
    const { body } = await readQuestionnaire(service, chats[4711].professional);
    assert.equal(body.status, 'submitted');
    assert.equal(Object.values(body.answers).filter(rating => rating === 'sufficient').length, 11);

    // The code stays in the frame's own storage, so the next visit asks for nothing.
    await page.reload();
    const again = await waitFor(() => page.frame({ name: 'console' }), 'the console frame after reload');
    await again.getByRole('heading', { name: 'Al verstuurd', exact: true }).waitFor();
    await assertAccessibleState(assert, page, 'console after sending', again);
    await context.close();
  });

  it('tells a colleague there is no questionnaire for her', async () => {
    const context = await browser.newContext({ viewport: { width: 400, height: 900 } });
    const page = await openPage(context, `${chatwoot.url}/chatwoot?conversation=4711`);
    const frame = await waitFor(() => page.frame({ name: 'console' }), 'the console frame');
    await frame.getByLabel('Je persoonlijke consolecode').fill(codes['n-18']);
    await frame.getByLabel('Je persoonlijke consolecode').press('Enter');
    await frame.getByText('Voor dit gesprek is er geen vragenlijst voor jou.').waitFor();
    await assertAccessibleState(assert, page, 'console without a questionnaire', frame);
    await context.close();
  });

  it('ignores appContext messages from other origins', async () => {
    const context = await browser.newContext({ viewport: { width: 400, height: 900 } });
    const exchanged = [];
    context.on('request', request => {
      if (request.url().endsWith('/api/console/token')) exchanged.push(request.postDataJSON().conversation_id);
    });
    const page = await openPage(context, `${chatwoot.url}/chatwoot?conversation=4712&intruder=${encodeURIComponent(intruder.url)}`);
    const frame = await waitFor(() => page.frame({ name: 'console' }), 'the console frame');
    await frame.getByLabel('Je persoonlijke consolecode').fill(codes['n-18']);
    await frame.getByLabel('Je persoonlijke consolecode').press('Enter');
    await frame.getByRole('heading', { name: 'Hoe ging de chat?', exact: true }).waitFor();
    await sleep(1000);
    assert.deepEqual([...new Set(exchanged)], ['4712'], 'only the conversation from the Chatwoot origin');
    await context.close();
  });

  it('cannot be framed by an origin that is not configured', async () => {
    const context = await browser.newContext();
    const page = await openPage(context, `${intruder.url}/chatwoot?conversation=4711`);
    await sleep(1000);
    const frame = page.frame({ name: 'console' });
    assert.equal(await frame.locator('#console').count(), 0, 'the console page does not load');
    assert.ok(page.log.some(line => line.includes('frame-ancestors')), 'Chromium reports the frame-ancestors block');
    await context.close();
  });
});
