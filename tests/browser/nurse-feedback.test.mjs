// Feedback to the nurse in Chromium against the real service: with ALLIANCE_NURSE_FEEDBACK
// on, the parent's introduction says that the nurse reads the answers, and the nurse sees
// the parent's answers beside her own once both have sent theirs. The parent never sees
// the nurse's answers. With the setting off, neither screen changes.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { assertAccessibleState, launchBrowser, newChat, openPage, startPlatform, startService } from './harness.mjs';

const TEST_TIMEOUT_MS = 90000;

const PARENT = ['good', 'good', 'sufficient', 'good', 'insufficient', 'good', 'good', 'sufficient', 'good', 'good', 'good'];
const NURSE = Array(11).fill('sufficient');

const NOTICE = 'De jeugdverpleegkundige met wie je chatte, leest ze ook.';
const FEEDBACK_TITLE = 'Jouw antwoorden en die van de ouder';
const NOT_AVAILABLE = 'Voor deze chat zijn ze er nu niet.';

let browser;
let platform;
let service;
let serviceWithout;

before(async () => {
  platform = await startPlatform();
  service = await startService({ platformUrl: platform.url, env: { ALLIANCE_NURSE_FEEDBACK: 'true' } });
  serviceWithout = await startService({ platformUrl: platform.url });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await service?.stop();
  await serviceWithout?.stop();
  await platform?.stop();
});

function heading(page, name) {
  return page.getByRole('heading', { name, exact: true });
}

/** Opens a questionnaire, answers all 11 items by mouse and sends it. */
async function fillIn(page, ratings, title) {
  await heading(page, title).waitFor();
  for (const [index, rating] of ratings.entries()) {
    const number = index + 1;
    const saved = page.waitForResponse(
      response => response.request().method() === 'PUT' && response.url().endsWith(`/items/${number}`),
    );
    await page
      .locator(`alliance-questionnaire #item-${number} label`)
      .filter({ has: page.locator(`input[value="${rating}"]`) })
      .click();
    assert.equal((await saved).status(), 200, `saving item ${number}`);
  }
  await page.getByRole('button', { name: 'Versturen', exact: true }).click();
  await heading(page, 'Bedankt!').waitFor();
}

/** Returns the lines of the feedback list, one per item. */
function feedbackLines(page) {
  return page.locator('alliance-questionnaire li').allTextContents();
}

describe('nurse feedback switched on', { timeout: TEST_TIMEOUT_MS }, () => {
  it('shows the parent\'s answers to the nurse after both sent, never the reverse', async () => {
    const chat = await newChat(service, platform);
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });

    const parentPage = await openPage(context, `${service.url}/q/${chat.parent}`);
    await heading(parentPage, 'Hoe vond je de chat?').waitFor();
    await parentPage.getByText(NOTICE).waitFor();
    await fillIn(parentPage, PARENT, 'Hoe vond je de chat?');
    assert.equal(await heading(parentPage, FEEDBACK_TITLE).count(), 0, 'the parent sees no feedback');

    const nursePage = await openPage(context, `${service.url}/q/${chat.professional}`);
    await fillIn(nursePage, NURSE, 'Hoe ging de chat?');
    await heading(nursePage, FEEDBACK_TITLE).waitFor();
    const lines = await feedbackLines(nursePage);
    assert.equal(lines.length, 11);
    assert.equal(lines[0], '1. BegripOuder: goed. Jij: voldoende.');
    assert.equal(lines[4], '5. VertrouwenOuder: onvoldoende. Jij: voldoende.');
    await assertAccessibleState(assert, nursePage, 'feedback after sending');

    // The nurse's link again: already sent, with the parent's answers.
    const again = await openPage(context, `${service.url}/q/${chat.professional}`);
    await heading(again, 'Al verstuurd').waitFor();
    await heading(again, FEEDBACK_TITLE).waitFor();
    assert.equal((await feedbackLines(again)).length, 11);
    await assertAccessibleState(assert, again, 'already sent, with feedback');

    // The parent's link again: already sent, and nothing of the nurse.
    const parentAgain = await openPage(context, `${service.url}/q/${chat.parent}`);
    await heading(parentAgain, 'Al verstuurd').waitFor();
    assert.equal(await heading(parentAgain, FEEDBACK_TITLE).count(), 0);
    assert.equal(await feedbackLines(parentAgain).then(items => items.length), 0);
    await context.close();
  });

  it('tells the nurse who sends first that the parent\'s answers are not there', async () => {
    const chat = await newChat(service, platform);
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const page = await openPage(context, `${service.url}/q/${chat.professional}`);
    await fillIn(page, NURSE, 'Hoe ging de chat?');
    await page.getByText(NOT_AVAILABLE).waitFor();
    assert.equal(await heading(page, FEEDBACK_TITLE).count(), 0);
    await assertAccessibleState(assert, page, 'feedback not available');
    await context.close();
  });
});

describe('nurse feedback switched off', { timeout: TEST_TIMEOUT_MS }, () => {
  it('keeps both screens as they were', async () => {
    const chat = await newChat(serviceWithout, platform);
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });

    const parentPage = await openPage(context, `${serviceWithout.url}/q/${chat.parent}`);
    await heading(parentPage, 'Hoe vond je de chat?').waitFor();
    await parentPage.getByText('Het team van de chat leest je antwoorden.').waitFor();
    assert.equal(await parentPage.getByText(NOTICE).count(), 0, 'no notice about the nurse');
    await fillIn(parentPage, PARENT, 'Hoe vond je de chat?');

    const nursePage = await openPage(context, `${serviceWithout.url}/q/${chat.professional}`);
    await fillIn(nursePage, NURSE, 'Hoe ging de chat?');
    assert.equal(await heading(nursePage, FEEDBACK_TITLE).count(), 0);
    assert.equal(await nursePage.getByText(NOT_AVAILABLE).count(), 0);
    await context.close();
  });
});
