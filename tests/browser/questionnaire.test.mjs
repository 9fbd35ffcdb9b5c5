// The questionnaire plugin in Chromium against the real service, for both roles, on the
// hosted page `/q/{token}` and embedded in a host page with hostile CSS on another origin.

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
  readReport,
  startHost,
  startPlatform,
  startService,
  waitFor,
} from './harness.mjs';

const TEST_TIMEOUT_MS = 90000;

// One rating per item, mixed so a mix-up between items shows.
const RATINGS = ['good', 'sufficient', 'good', 'insufficient', 'good', 'good', 'sufficient', 'good', 'good', 'sufficient', 'good'];
const answersFor = count => Object.fromEntries(RATINGS.slice(0, count).map((rating, index) => [String(index + 1), rating]));

const TITLES = { parent: 'Hoe vond je de chat?', professional: 'Hoe ging de chat?' };

let browser;
let platform;
let host;
let service;
let expiringService;

before(async () => {
  platform = await startPlatform();
  host = await startHost();
  service = await startService({ platformUrl: platform.url, env: { ALLIANCE_PLATFORM_ORIGINS: host.url } });
  // 0.001 hours is 3.6 seconds, so questionnaires of this service expire during the run.
  expiringService = await startService({
    platformUrl: platform.url,
    env: { ALLIANCE_PLATFORM_ORIGINS: host.url, ALLIANCE_QUESTIONNAIRE_EXPIRY_HOURS: '0.001' },
  });
  host.serviceUrl = service.url;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await service?.stop();
  await expiringService?.stop();
  await platform?.stop();
  await host?.stop();
});

/** Where a questionnaire is shown: the hosted page or a host page on another origin. */
const MODES = {
  hosted: token => `${service.url}/q/${token}`,
  embedded: token => `${host.url}/embed?token=${encodeURIComponent(token)}`,
};

async function newContext() {
  return browser.newContext({ viewport: { width: 390, height: 844 } });
}

function heading(page, name) {
  return page.getByRole('heading', { name, exact: true });
}

async function waitForForm(page, role) {
  await heading(page, TITLES[role]).waitFor();
}

/** Clicks the label of `rating` in item `number` and waits until the server saved it. */
async function clickRating(page, number, rating) {
  const saved = page.waitForResponse(
    response => response.request().method() === 'PUT' && response.url().endsWith(`/items/${number}`),
  );
  await page
    .locator(`alliance-questionnaire #item-${number} label`)
    .filter({ has: page.locator(`input[value="${rating}"]`) })
    .click();
  assert.equal((await saved).status(), 200, `saving item ${number}`);
}

/** Returns the checked rating of each item as the page shows it. */
function shownAnswers(page) {
  return page.evaluate(() => {
    const root = document.querySelector('alliance-questionnaire').shadowRoot;
    const answers = {};
    for (const input of root.querySelectorAll('input[type=radio]:checked')) answers[input.name.slice(1)] = input.value;
    return answers;
  });
}

async function progressText(page) {
  return page.locator('alliance-questionnaire .progress').textContent();
}

async function serverAnswers(token) {
  return (await readQuestionnaire(service, token)).body.answers;
}

/** Presses Tab until the focused element matches `predicate`; fails after `limit` presses. */
async function tabUntil(page, predicate, what, limit = 12) {
  for (let presses = 0; presses < limit; presses++) {
    await page.keyboard.press('Tab');
    const element = await focused(page);
    if (predicate(element)) return element;
  }
  throw new Error(`no ${what} within ${limit} Tab presses`);
}

for (const [mode, urlFor] of Object.entries(MODES)) {
  for (const role of ['parent', 'professional']) {
    describe(`${role} on the ${mode} page`, { timeout: TEST_TIMEOUT_MS }, () => {
      it('completes all 11 items by mouse', async () => {
        const chat = await newChat(service, platform);
        const token = chat[role];
        const context = await newContext();
        const page = await openPage(context, urlFor(token));

        await waitForForm(page, role);
        assert.equal(await progressText(page), '0 van 11 beantwoord');
        await assertAccessibleState(assert, page, 'form, nothing answered');

        // Sending with nothing answered marks every item and names them.
        await page.getByRole('button', { name: 'Versturen', exact: true }).click();
        await page.locator('alliance-questionnaire #msg').filter({ hasText: 'Nog open' }).waitFor();
        assert.equal(await page.locator('alliance-questionnaire fieldset.miss').count(), 11);
        assert.equal((await focused(page)).name, 'q1', 'focus moves to the first open item');
        await assertAccessibleState(assert, page, 'form, missing answers marked');

        for (const [index, rating] of RATINGS.entries()) await clickRating(page, index + 1, rating);
        assert.equal(await progressText(page), '11 van 11 beantwoord');
        assert.equal(await page.locator('alliance-questionnaire fieldset.miss').count(), 0);
        await page.locator('alliance-questionnaire textarea').fill('Fijne chat.');
        await page.getByRole('button', { name: 'Versturen', exact: true }).click();

        await heading(page, 'Bedankt!').waitFor();
        await assertAccessibleState(assert, page, 'thank you');
        const { body } = await readQuestionnaire(service, token);
        assert.equal(body.status, 'submitted');
        assert.deepEqual(body.answers, answersFor(11));

        // The same link again shows that the questionnaire was already sent.
        const again = await openPage(context, urlFor(token));
        await heading(again, 'Al verstuurd').waitFor();
        await assertAccessibleState(assert, again, 'already sent');
        await context.close();
      });

      it('completes all 11 items by keyboard alone', async () => {
        const chat = await newChat(service, platform);
        const token = chat[role];
        const context = await newContext();
        const page = await openPage(context, urlFor(token));
        await waitForForm(page, role);

        for (const [index, rating] of RATINGS.entries()) {
          const number = String(index + 1);
          const first = await tabUntil(page, element => element.name === `q${number}`, `radio of item ${number}`);
          assert.equal(first.value, 'insufficient', `Tab enters item ${number} on its first option`);
          const moves = ['insufficient', 'sufficient', 'good'].indexOf(rating);
          if (moves === 0) await page.keyboard.press('Space');
          for (let step = 0; step < moves; step++) await page.keyboard.press('ArrowDown');
          const chosen = await focused(page);
          assert.equal(chosen.value, rating, `item ${number} rating`);
          assert.ok(chosen.checked, `item ${number} checked`);
        }
        assert.equal(await progressText(page), '11 van 11 beantwoord', 'no item moved on by itself');

        await tabUntil(page, element => element.tag === 'textarea', 'comment field');
        await page.keyboard.type('Prima.');
        await tabUntil(page, element => element.action === 'submit', 'submit button');
        await page.keyboard.press('Enter');

        await heading(page, 'Bedankt!').waitFor();
        assert.equal((await focused(page)).text, 'Bedankt!', 'focus moves to the thank-you heading');
        const { body } = await readQuestionnaire(service, token);
        assert.equal(body.status, 'submitted');
        assert.deepEqual(body.answers, answersFor(11));
        await context.close();
      });

      it('keeps 5 answers after leaving and coming back', async () => {
        const chat = await newChat(service, platform);
        const token = chat[role];
        const context = await newContext();
        const page = await openPage(context, urlFor(token));
        await waitForForm(page, role);

        for (const [index, rating] of RATINGS.slice(0, 5).entries()) await clickRating(page, index + 1, rating);
        assert.deepEqual(await serverAnswers(token), answersFor(5));
        await page.reload();
        await waitForForm(page, role);
        assert.deepEqual(await shownAnswers(page), answersFor(5), 'answers after a reload');
        assert.equal(await progressText(page), '5 van 11 beantwoord');
        await page.close();

        // A new browser profile has no local copy, so these answers come from the server.
        const otherContext = await newContext();
        const later = await openPage(otherContext, urlFor(token));
        await waitForForm(later, role);
        assert.deepEqual(await shownAnswers(later), answersFor(5), 'answers on another device');
        assert.equal(await progressText(later), '5 van 11 beantwoord');
        await otherContext.close();
        await context.close();
      });

      it('sends answers given offline once back online', async () => {
        const chat = await newChat(service, platform);
        const token = chat[role];
        const context = await newContext();
        const page = await openPage(context, urlFor(token));
        await waitForForm(page, role);
        for (const [index, rating] of RATINGS.slice(0, 3).entries()) await clickRating(page, index + 1, rating);

        // Offline while the page stays open: sent on the `online` event.
        await context.setOffline(true);
        for (const number of [4, 5]) {
          await page
            .locator(`alliance-questionnaire #item-${number} label`)
            .filter({ has: page.locator(`input[value="${RATINGS[number - 1]}"]`) })
            .click();
        }
        await page.locator('alliance-questionnaire #msg').filter({ hasText: 'Er is geen verbinding' }).waitFor();
        assert.equal(await progressText(page), '5 van 11 beantwoord');
        assert.deepEqual(await serverAnswers(token), answersFor(3), 'nothing arrives while offline');
        await assertAccessibleState(assert, page, 'offline, answers waiting');
        await context.setOffline(false);
        await waitFor(async () => Object.keys(await serverAnswers(token)).length === 5, '5 answers on the server');
        assert.deepEqual(await serverAnswers(token), answersFor(5));
        const message = page.locator('alliance-questionnaire #msg');
        await waitFor(async () => (await message.textContent()) === '', 'the offline message to clear');

        // Offline and the page closed: sent from localStorage on the next load.
        await context.setOffline(true);
        for (const number of [6, 7]) {
          await page
            .locator(`alliance-questionnaire #item-${number} label`)
            .filter({ has: page.locator(`input[value="${RATINGS[number - 1]}"]`) })
            .click();
        }
        await page.locator('alliance-questionnaire #msg').filter({ hasText: 'Er is geen verbinding' }).waitFor();
        await page.close();
        await sleep(200);
        assert.deepEqual(await serverAnswers(token), answersFor(5), 'nothing arrives while the page is closed');
        await context.setOffline(false);
        const later = await openPage(context, urlFor(token));
        await waitForForm(later, role);
        await waitFor(async () => Object.keys(await serverAnswers(token)).length === 7, '7 answers on the server');
        assert.deepEqual(await serverAnswers(token), answersFor(7));
        assert.deepEqual(await shownAnswers(later), answersFor(7));

        for (const [index, rating] of RATINGS.entries()) {
          if (index >= 7) await clickRating(later, index + 1, rating);
        }
        await later.getByRole('button', { name: 'Versturen', exact: true }).click();
        await heading(later, 'Bedankt!').waitFor();
        assert.equal((await readQuestionnaire(service, token)).body.status, 'submitted');
        await context.close();
      });

      it('declines with "Nee, liever niet"', async () => {
        const chat = await newChat(service, platform);
        const token = chat[role];
        const context = await newContext();
        const page = await openPage(context, urlFor(token));
        await waitForForm(page, role);
        await clickRating(page, 1, 'good');
        await page.getByRole('button', { name: 'Nee, liever niet', exact: true }).click();
        await heading(page, 'Helemaal goed').waitFor();
        await assertAccessibleState(assert, page, 'declined');
        const { body } = await readQuestionnaire(service, token);
        assert.equal(body.status, 'declined');
        assert.deepEqual(body.answers, {}, 'declining deletes the answers given');
        await context.close();
      });

      it('shows an expired questionnaire as expired', async () => {
        host.serviceUrl = expiringService.url;
        try {
          const chat = await newChat(expiringService, platform);
          await sleep(4000);
          const context = await newContext();
          const url = mode === 'hosted' ? `${expiringService.url}/q/${chat[role]}` : urlFor(chat[role]);
          const page = await openPage(context, url);
          await heading(page, 'Verlopen').waitFor();
          await page.getByText('Deze vragenlijst is verlopen.').waitFor();
          await assertAccessibleState(assert, page, 'expired');
          await context.close();
        } finally {
          host.serviceUrl = service.url;
        }
      });
    });
  }
}

describe('the hosted page', { timeout: TEST_TIMEOUT_MS }, () => {
  it('shows an unknown link as not found', async () => {
    const context = await newContext();
    const page = await openPage(context, `${service.url}/q/inv_00000000000000000000000000000000.AAAAAAAAAAAAAAAAAAAAAA`);
    await heading(page, 'Niet gevonden').waitFor();
    await assertAccessibleState(assert, page, 'not found');
    await context.close();
  });

  it('shows English on request', async () => {
    const chat = await newChat(service, platform);
    const context = await newContext();
    const page = await openPage(context, `${service.url}/q/${chat.parent}?lang=en`);
    await heading(page, 'What did you think of the chat?').waitFor();
    assert.equal(await page.getAttribute('html', 'lang'), 'en');
    // The chat is Dutch, but the items are shown in English, so screen readers must read them as English.
    assert.equal(await page.locator('.stem').getAttribute('lang'), 'en');
    await assertAccessibleState(assert, page, 'form in English');
    await context.close();
  });

  it('counts the submitted questionnaires in the report', async () => {
    const report = await readReport(service);
    // Per role: mouse, keyboard and offline on the hosted and the embedded page.
    assert.equal(report.questionnaires.parent.submitted, 6);
    assert.equal(report.questionnaires.professional.submitted, 6);
    assert.equal(report.questionnaires.parent.declined, 2);
    assert.equal(report.questionnaires.professional.declined, 2);
  });
});
