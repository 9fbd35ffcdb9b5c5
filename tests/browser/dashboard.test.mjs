// The report dashboard `GET /report` in Chromium on the study replay of `alliance demo`: the
// published counts in the summary and in every chart, in Dutch and in English, the charts' text
// alternatives, the print layout, and full-page screenshots.
//
// The screenshots go to a temporary directory. With ALLIANCE_DOCS_SCREENSHOTS=1 they replace
// docs/dashboard-nl.png and docs/dashboard-en.png; they are not written on every run because
// the page shows the time it was generated, so each run would change both files.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { ROOT, axeViolations, cspViolations, horizontalOverflow, launchBrowser, openPage, startDemo } from './harness.mjs';

const HOOK_TIMEOUT_MS = 300000;
const TEST_TIMEOUT_MS = 60000;

// The published aggregates of the 2022 GroeiGids measurement. The demo builds its dataset from
// this file too, but it sends every response through the public HTTP interfaces and the report
// counts them again, so a count that the replay, the report or the page gets wrong differs.
const PUBLISHED = JSON.parse(readFileSync(path.join(ROOT, 'server/data/groeigids-2022-study.json'), 'utf8'));
const INSTRUMENT = JSON.parse(readFileSync(path.join(ROOT, 'server/data/voa-questionnaire.json'), 'utf8'));

const RATINGS = ['insufficient', 'sufficient', 'good'];
const ROLES = ['parent', 'professional'];

// Pairs per overall category, rows parent and columns nurse, both in the order of RATINGS. The
// publication gives 62% agreement over 218 pairs and states that most disagreement is a parent's
// 'goed' against a nurse's 'voldoende'. The replay fixes the rest: 115 pairs goed/goed, 65
// goed/voldoende, 18 voldoende/goed and 20 voldoende/voldoende.
const CATEGORY_TABLE = [
  [0, 0, 0],
  [0, 20, 18],
  [0, 65, 115],
];

/** Published Table 2 as `{ parent: [insufficient, sufficient, good], professional: [...] }` per item. */
function tableTwo(number) {
  const row = PUBLISHED.matched_pairs.item_counts.rows[String(number)];
  return { parent: row.slice(0, 3), professional: row.slice(3, 6) };
}

// Words the page shows in each language, apart from those in the instrument file.
const WORDS = {
  nl: {
    title: 'Online alliantie: rapport',
    otherLanguage: 'English',
    item: 'Vraag',
    roles: { parent: 'ouder', professional: 'jeugdverpleegkundige' },
    roleGroups: { parent: 'Ouders', professional: 'Jeugdverpleegkundigen' },
    stages: ['uitgenodigd', 'geopend', 'begonnen', 'vraag 1', 'vraag 11', 'volledig', 'verstuurd'],
    of: 'van',
    pairs: 'paren',
    agree: 'eens',
    hidden: 'verborgen',
    decimal: ',',
  },
  en: {
    title: 'Online alliance: report',
    otherLanguage: 'Nederlands',
    item: 'Item',
    roles: { parent: 'parent', professional: 'nurse' },
    roleGroups: { parent: 'Parents', professional: 'Nurses' },
    stages: ['invited', 'opened', 'started', 'item 1', 'item 11', 'complete', 'submitted'],
    of: 'of',
    pairs: 'pairs',
    agree: 'agree',
    hidden: 'hidden',
    decimal: '.',
  },
};

const STAGES = ['invited', 'opened', 'started', 'item_1', 'item_11', 'complete', 'submitted'];

// A4 paper with 1 cm margins, Chromium's default for PDF output: 190 mm of width is 718 CSS pixels.
const A4_PRINT_WIDTH = 718;
const SCREENSHOT_WIDTH = 1280;

const ratingLabel = (lang, rating) => INSTRUMENT.scale.find(point => point.value === rating)[lang];
const capitalized = word => word[0].toUpperCase() + word.slice(1);
// One decimal with the page language's separator: a comma in Dutch, a point in English.
const oneDecimal = (value, words) => value.toFixed(1).replace('.', words.decimal);
const roundTo = (value, digits) => Math.round(value * 10 ** digits) / 10 ** digits;

/** Returns `2022-W26` for a date, by ISO 8601: weeks start on Monday, week 1 contains 4 January. */
function isoWeek(date) {
  const thursday = new Date(date);
  thursday.setUTCDate(date.getUTCDate() + 3 - ((date.getUTCDay() + 6) % 7));
  const year = thursday.getUTCFullYear();
  const week = 1 + Math.floor((thursday - Date.UTC(year, 0, 1)) / (7 * 86400000));
  return `${year}-W${String(week).padStart(2, '0')}`;
}

/** Returns the ISO weeks of the study period, in order. */
function studyWeeks() {
  const weeks = [];
  const last = new Date(`${PUBLISHED.period.last_day}T00:00:00Z`);
  for (let day = new Date(`${PUBLISHED.period.first_day}T00:00:00Z`); day <= last; day.setUTCDate(day.getUTCDate() + 1)) {
    const week = isoWeek(day);
    if (weeks.at(-1) !== week) weeks.push(week);
  }
  return weeks;
}

/** Reads the summary figures and every chart from the DOM: data attributes, texts, titles and geometry. */
function readDashboard(page) {
  return page.evaluate(() => {
    const number = value => (value === undefined ? undefined : Number(value));
    const text = element => (element ? element.textContent.trim() : null);
    const attribute = (element, name) => Number(element.getAttribute(name));
    const ownTitle = element => text(element.querySelector(':scope > title'));

    const figures = {};
    for (const div of document.querySelectorAll('#summary [data-figure]')) {
      figures[div.dataset.figure] = {
        count: number(div.dataset.count),
        of: number(div.dataset.of),
        percent: number(div.dataset.percent),
        text: text(div.querySelector('dd')),
      };
    }

    const itemsChart = document.querySelector('svg.items');
    const axis = itemsChart?.querySelector('line.axis');
    const items = {
      centre: axis ? attribute(axis, 'x1') : null,
      labels: [...(itemsChart?.querySelectorAll(':scope > text.label[text-anchor="end"]') ?? [])].map(text),
      bars: [...(itemsChart?.querySelectorAll('g[data-item]') ?? [])].map(group => ({
        item: number(group.dataset.item),
        role: group.dataset.role,
        counts: [number(group.dataset.insufficient), number(group.dataset.sufficient), number(group.dataset.good)],
        title: ownTitle(group),
        segments: Object.fromEntries(
          [...group.querySelectorAll('rect[data-rating]')].map(rect => [
            rect.dataset.rating,
            { x: attribute(rect, 'x'), width: attribute(rect, 'width'), rendered: rect.getBoundingClientRect().width > 0 },
          ]),
        ),
        countTexts: Object.fromEntries([...group.querySelectorAll('text[data-rating]')].map(label => [label.dataset.rating, text(label)])),
      })),
    };

    const heat = document.querySelector('svg.heat');
    const cells = [...(heat?.querySelectorAll('g[data-parent]') ?? [])].map(group => {
      const rect = group.querySelector('rect');
      return {
        parent: group.dataset.parent,
        professional: group.dataset.professional,
        count: number(group.dataset.count),
        text: text(group.querySelector('text')),
        title: ownTitle(group),
        x: attribute(rect, 'x'),
        y: attribute(rect, 'y'),
        level: Number(rect.getAttribute('class').match(/\bh(\d)\b/)?.[1]),
        diagonal: rect.classList.contains('diagonal'),
      };
    });

    const funnels = {};
    for (const svg of document.querySelectorAll('svg.funnel[data-role]')) {
      funnels[svg.dataset.role] = {
        heading: text(svg.querySelector('text.heading')),
        stages: [...svg.querySelectorAll('g[data-stage]')].map(group => {
          const [stageLabel, valueLabel] = group.querySelectorAll('text');
          return {
            stage: group.dataset.stage,
            count: number(group.dataset.count),
            title: ownTitle(group),
            label: text(stageLabel),
            value: text(valueLabel),
            width: attribute(group.querySelector('rect'), 'width'),
          };
        }),
      };
    }

    const trend = document.querySelector('svg.trend');
    const baseline = trend?.querySelector('line.axis');
    const weeks = [...(trend?.querySelectorAll('g[data-week]') ?? [])].map(group => {
      const bar = group.querySelector('rect.week');
      const point = group.querySelector('circle.point');
      return {
        week: group.dataset.week,
        suppressed: group.dataset.suppressed === 'true',
        marker: text(group.querySelector(':scope > text')),
        pairs: number(group.dataset.pairs),
        agreeing: number(group.dataset.agreeing),
        percent: number(group.dataset.percent),
        barHeight: bar ? attribute(bar, 'height') : null,
        barBottom: bar ? attribute(bar, 'y') + attribute(bar, 'height') : null,
        barTitle: bar ? ownTitle(bar) : null,
        pointY: point ? attribute(point, 'cy') : null,
        pointTitle: point ? ownTitle(point) : null,
      };
    });
    const trendData = {
      baseline: baseline ? attribute(baseline, 'y1') : null,
      labels: [...(trend?.querySelectorAll(':scope > text.small') ?? [])].map(text),
      weeks,
      line: trend?.querySelector('polyline.line')?.getAttribute('points').split(' ').length ?? 0,
    };

    const minimum = document.querySelector('#breakdowns .explain')?.textContent.match(/minimum: (\d+)/)?.[1];
    return { figures, items, cells, funnels, trend: trendData, minCellSize: Number(minimum) };
  });
}

/** Returns the name and description that Chromium's accessibility tree gives each chart. */
async function chartAlternatives(page) {
  const session = await page.context().newCDPSession(page);
  try {
    const { root } = await session.send('DOM.getDocument', { depth: 0 });
    const { nodes } = await session.send('Accessibility.queryAXTree', { nodeId: root.nodeId, role: 'image' });
    return nodes.map(node => ({ name: node.name?.value ?? '', description: node.description?.value ?? '' }));
  } finally {
    await session.detach();
  }
}

/** Returns the width and height that a PNG file's header states. */
function pngSize(buffer) {
  assert.equal(buffer.subarray(1, 4).toString('latin1'), 'PNG', 'the screenshot is a PNG file');
  return { width: buffer.readUInt32BE(16), height: buffer.readUInt32BE(20) };
}

/** Checks the weekly trend chart of the study period. With `complete`, no week may be suppressed. */
function assertTrend(trend, minCellSize, words, complete) {
  const expectedWeeks = studyWeeks();
  assert.deepEqual(trend.labels, expectedWeeks, 'one label per ISO week of the study period');
  assert.deepEqual(
    trend.weeks.map(week => week.week),
    expectedWeeks,
    'one group per ISO week of the study period',
  );

  const shownWeeks = trend.weeks.filter(week => !week.suppressed);
  const largest = Math.max(...shownWeeks.map(week => week.pairs));
  const tallest = Math.max(...shownWeeks.map(week => week.barHeight));
  // The first week with a point above 0% fixes how many SVG units one percentage point is.
  const reference = shownWeeks.find(week => week.percent > 0);
  const unitsPerPercent = (trend.baseline - reference.pointY) / reference.percent;

  for (const week of trend.weeks) {
    if (week.suppressed) {
      assert.equal(week.marker, words.hidden, `${week.week} is marked as hidden`);
      assert.equal(week.barHeight, null, `${week.week} has no bar`);
      assert.equal(week.pairs, undefined, `${week.week} gives no count away`);
      continue;
    }
    assert.ok(week.pairs >= minCellSize, `${week.week} has ${week.pairs} pairs, at least the minimum cell size ${minCellSize}`);
    assert.ok(week.agreeing <= week.pairs, `${week.week}: agreeing pairs within the pairs`);
    assert.equal(week.percent, roundTo((week.agreeing / week.pairs) * 100, 2), `${week.week}: percentage of agreeing pairs`);
    assert.ok(Math.abs(week.barHeight / tallest - week.pairs / largest) < 0.01, `${week.week}: bar height in proportion to pairs`);
    assert.ok(Math.abs(week.barBottom - trend.baseline) < 0.2, `${week.week}: bar stands on the axis`);
    assert.ok(
      Math.abs(trend.baseline - week.pointY - week.percent * unitsPerPercent) < 0.2,
      `${week.week}: point height in proportion to agreement`,
    );
    assert.equal(week.barTitle, `${week.week}: ${week.pairs} ${words.pairs}`);
    assert.equal(
      week.pointTitle,
      `${week.week}: ${week.agreeing} ${words.of} ${week.pairs} ${words.pairs} ${words.agree} (${oneDecimal(roundTo(week.percent, 1), words)}%)`,
    );
  }
  assert.equal(trend.line, shownWeeks.length, 'the line joins every shown week');

  const pairs = shownWeeks.reduce((sum, week) => sum + week.pairs, 0);
  const agreeing = shownWeeks.reduce((sum, week) => sum + week.agreeing, 0);
  const agreeingPairs = CATEGORY_TABLE.reduce((sum, row, index) => sum + row[index], 0);
  if (complete) {
    assert.equal(shownWeeks.length, expectedWeeks.length, 'no week is suppressed');
    assert.equal(pairs, PUBLISHED.matched_pairs.n, 'the weeks add up to all pairs');
    assert.equal(agreeing, agreeingPairs, 'the weeks add up to all agreeing pairs');
  } else {
    assert.ok(pairs <= PUBLISHED.matched_pairs.n, `the shown weeks contain ${pairs} pairs, at most all pairs`);
    assert.ok(agreeing <= agreeingPairs, `the shown weeks contain ${agreeing} agreeing pairs, at most all of them`);
  }
}

let browser;
let demo;
let context;
let landingUrl;
let screenshotDir;

before(
  async () => {
    demo = await startDemo();
    browser = await launchBrowser();
    screenshotDir = mkdtempSync(path.join(tmpdir(), 'alliance-dashboard-'));

    // Every page of this context shares the session that the demo's login link starts.
    context = await browser.newContext({ viewport: { width: SCREENSHOT_WIDTH, height: 900 } });
    const page = await openPage(context, demo.loginLink);
    await page.getByRole('heading', { level: 1, name: WORDS.nl.title }).waitFor();
    landingUrl = new URL(page.url());
    await page.close();
  },
  { timeout: HOOK_TIMEOUT_MS },
);

after(async () => {
  await browser?.close();
  const code = await demo?.stop();
  if (screenshotDir) rmSync(screenshotDir, { recursive: true, force: true });
  assert.equal(code, 0, `alliance demo exits cleanly on SIGINT:\n${demo?.stderr()}`);
});

describe('dashboard login link', { timeout: TEST_TIMEOUT_MS }, () => {
  it('starts a session once', async () => {
    assert.equal(landingUrl.pathname, '/report');
    assert.equal(landingUrl.searchParams.get('lang'), 'nl', 'the login link opens the Dutch dashboard');

    const [cookie] = await context.cookies(`${demo.url}/report`);
    assert.equal(cookie?.name, 'alliance_session');
    assert.equal(cookie.httpOnly, true, 'the session cookie is HttpOnly');
    assert.equal(cookie.sameSite, 'Strict', 'the session cookie is SameSite=Strict');

    const stranger = await browser.newContext();
    const again = await stranger.newPage();
    const response = await again.goto(demo.loginLink);
    assert.equal(response.status(), 401, 'a used login link is rejected');
    assert.equal(await again.locator('input[name=token]').count(), 1, 'a used login link shows the login form');
    await stranger.close();
  });
});

for (const lang of ['nl', 'en']) {
  const words = WORDS[lang];

  describe(`dashboard in ${lang === 'nl' ? 'Dutch' : 'English'}`, { timeout: TEST_TIMEOUT_MS }, () => {
    let page;
    let dashboard;

    before(async () => {
      page = await openPage(context, `${demo.url}/report?lang=${lang}`);
      await page.getByRole('heading', { level: 1, name: words.title }).waitFor();
      dashboard = await readDashboard(page);
    });

    after(async () => {
      await page?.close();
    });

    it('shows the page in its language', async () => {
      assert.equal(await page.getAttribute('html', 'lang'), lang);
      assert.equal(await page.title(), words.title);
      const other = page.locator('header .meta .language a');
      assert.equal((await other.textContent()).trim(), words.otherLanguage);
      assert.equal(new URL(await other.getAttribute('href'), demo.url).searchParams.get('lang'), lang === 'nl' ? 'en' : 'nl');
      const legend = await page.locator('svg.items > text.label:not([text-anchor])').allTextContents();
      assert.deepEqual(legend, RATINGS.map(rating => ratingLabel(lang, rating)), 'the legend names the ratings');
    });

    it('shows the published summary figures', () => {
      const { figures } = dashboard;
      const rates = PUBLISHED.published_rates_percent;

      assert.equal(figures.chats.count, PUBLISHED.chats);
      assert.equal(figures.chats.text, String(PUBLISHED.chats));

      for (const [figure, count, rate] of [
        ['parent-complete', PUBLISHED.complete_questionnaires.parent, rates.parent],
        ['professional-complete', PUBLISHED.complete_questionnaires.professional, rates.professional],
        ['pairs', PUBLISHED.complete_questionnaires.both_for_same_chat, rates.both],
      ]) {
        assert.equal(figures[figure].count, count, `${figure}: count`);
        assert.equal(figures[figure].of, PUBLISHED.chats, `${figure}: out of all chats`);
        assert.equal(roundTo(figures[figure].percent, 1), rate, `${figure}: published rate`);
        assert.ok(
          figures[figure].text.startsWith(`${count} · ${oneDecimal(rate, words)}%`),
          `${figure} shows "${count} · ${oneDecimal(rate, words)}%": ${figures[figure].text}`,
        );
      }

      const agreeing = CATEGORY_TABLE.reduce((sum, row, index) => sum + row[index], 0);
      const pairs = PUBLISHED.matched_pairs.n;
      const agreement = figures['category-agreement'];
      assert.equal(agreement.count, agreeing, 'agreeing pairs');
      assert.equal(agreement.of, pairs, 'all pairs');
      assert.equal(agreement.percent, roundTo((agreeing / pairs) * 100, 2), 'category agreement with two decimals');
      assert.equal(Math.round(agreement.percent), PUBLISHED.matched_pairs.agreement_total_score_0_to_100, 'the published 62%');
      const percentText = `${oneDecimal(roundTo(agreement.percent, 1), words)}%`;
      assert.ok(agreement.text.startsWith(percentText), `the headline starts with ${percentText}: ${agreement.text}`);
      assert.ok(
        agreement.text.endsWith(`${agreeing} ${words.of} ${pairs} ${words.pairs}`),
        `the headline names ${agreeing} of ${pairs} pairs: ${agreement.text}`,
      );
    });

    it('draws Table 2 as diverging bars', () => {
      const { items } = dashboard;
      assert.deepEqual(
        items.labels,
        INSTRUMENT.items.map(item => `${item.number}. ${item.element[lang]}`),
        'one label per item, in the language of the page',
      );
      assert.equal(items.bars.length, 22, 'one bar per item and role');

      for (const item of INSTRUMENT.items) {
        const published = tableTwo(item.number);
        for (const role of ROLES) {
          const where = `item ${item.number}, ${role}`;
          const bar = items.bars.find(candidate => candidate.item === item.number && candidate.role === role);
          assert.ok(bar, `${where}: bar drawn`);
          assert.deepEqual(bar.counts, published[role], `${where}: counts of Table 2`);
          const total = published[role].reduce((sum, count) => sum + count, 0);
          assert.equal(total, PUBLISHED.matched_pairs.n, `${where}: Table 2 counts every pair`);

          const countsText = RATINGS.map((rating, index) => `${ratingLabel(lang, rating)} ${published[role][index]}`).join(', ');
          assert.equal(bar.title, `${words.item} ${item.number} (${item.element[lang]}), ${words.roles[role]}: ${countsText}`);

          // Each segment's width is in proportion to its count, the segments touch, and the
          // middle of 'sufficient' lies on the centre line.
          const drawn = RATINGS.filter((_, index) => published[role][index] > 0);
          assert.deepEqual(Object.keys(bar.segments), drawn, `${where}: one segment per rating that has answers`);
          const fullWidth = drawn.reduce((sum, rating) => sum + bar.segments[rating].width, 0);
          for (const rating of drawn) {
            const share = published[role][RATINGS.indexOf(rating)] / total;
            assert.ok(Math.abs(bar.segments[rating].width - share * fullWidth) < 0.2, `${where}: ${rating} width in proportion`);
            assert.ok(bar.segments[rating].rendered, `${where}: ${rating} segment is rendered`);
          }
          for (const [left, right] of [['insufficient', 'sufficient'], ['sufficient', 'good']]) {
            if (!bar.segments[left] || !bar.segments[right]) continue;
            const end = bar.segments[left].x + bar.segments[left].width;
            assert.ok(Math.abs(end - bar.segments[right].x) < 0.2, `${where}: ${left} ends where ${right} starts`);
          }
          const sufficient = bar.segments.sufficient;
          assert.ok(Math.abs(sufficient.x + sufficient.width / 2 - items.centre) < 0.2, `${where}: 'sufficient' centred on the centre line`);

          for (const [rating, printed] of Object.entries(bar.countTexts)) {
            assert.equal(printed, String(published[role][RATINGS.indexOf(rating)]), `${where}: printed ${rating} count`);
          }
          assert.ok('good' in bar.countTexts, `${where}: the 'good' count is printed on the bar`);
        }
      }
    });

    it('draws the parent × nurse heat map', () => {
      const { cells } = dashboard;
      assert.equal(cells.length, 9, 'a 3 × 3 table');
      for (const [row, parentRating] of RATINGS.entries()) {
        for (const [column, nurseRating] of RATINGS.entries()) {
          const where = `parent ${parentRating}, nurse ${nurseRating}`;
          const cell = cells.find(candidate => candidate.parent === parentRating && candidate.professional === nurseRating);
          const count = CATEGORY_TABLE[row][column];
          assert.equal(cell.count, count, `${where}: pairs`);
          assert.equal(cell.text, String(count), `${where}: printed count`);
          assert.equal(
            cell.title,
            `${capitalized(words.roles.parent)} ${ratingLabel(lang, parentRating)}, ${words.roles.professional} ${ratingLabel(lang, nurseRating)}: ${count} ${words.pairs}`,
          );
          assert.equal(cell.diagonal, row === column, `${where}: the diagonal is marked`);
        }
      }

      // Rows are the parent's category and columns the nurse's, both from onvoldoende to goed.
      const columnX = RATINGS.map(rating => cells.find(cell => cell.professional === rating && cell.parent === 'good').x);
      const rowY = RATINGS.map(rating => cells.find(cell => cell.parent === rating && cell.professional === 'good').y);
      for (const cell of cells) {
        assert.equal(cell.x, columnX[RATINGS.indexOf(cell.professional)], `${cell.parent}/${cell.professional}: in the nurse's column`);
        assert.equal(cell.y, rowY[RATINGS.indexOf(cell.parent)], `${cell.parent}/${cell.professional}: in the parent's row`);
      }
      for (const index of [1, 2]) {
        assert.ok(columnX[index - 1] < columnX[index], `nurse columns run left to right: ${columnX}`);
        assert.ok(rowY[index - 1] < rowY[index], `parent rows run top to bottom: ${rowY}`);
      }

      // Shading: more pairs never give a lighter cell, and only empty cells have the lightest.
      for (const cell of cells) {
        assert.equal(cell.level === 0, cell.count === 0, `${cell.parent}/${cell.professional}: level ${cell.level} for ${cell.count}`);
        for (const other of cells) {
          if (cell.count > other.count) assert.ok(cell.level >= other.level, `${cell.count} pairs shaded at least as dark as ${other.count}`);
        }
      }

      const total = cells.reduce((sum, cell) => sum + cell.count, 0);
      assert.equal(total, PUBLISHED.matched_pairs.n, 'the heat map counts every pair');
    });

    it('draws the response funnels', () => {
      for (const role of ROLES) {
        const funnel = dashboard.funnels[role];
        assert.ok(funnel, `${role} funnel drawn`);
        assert.equal(funnel.heading, words.roleGroups[role]);
        assert.deepEqual(funnel.stages.map(stage => stage.stage), STAGES);
        assert.deepEqual(funnel.stages.map(stage => stage.label), words.stages);

        const count = Object.fromEntries(funnel.stages.map(stage => [stage.stage, stage.count]));
        assert.equal(count.invited, PUBLISHED.chats, `${role}: every chat invites`);
        assert.equal(count.complete, PUBLISHED.complete_questionnaires[role], `${role}: complete questionnaires`);
        for (const [index, stage] of STAGES.entries()) {
          if (index > 0) assert.ok(count[stage] <= count[STAGES[index - 1]], `${role}: ${stage} is at most ${STAGES[index - 1]}`);
        }
        const rate = PUBLISHED.published_rates_percent[role];
        const complete = funnel.stages.find(stage => stage.stage === 'complete');
        assert.equal(complete.value, `${count.complete} (${oneDecimal(rate, words)}%)`, `${role}: the published response rate`);

        const invited = funnel.stages[0];
        for (const stage of funnel.stages) {
          const share = oneDecimal((stage.count / invited.count) * 100, words);
          assert.equal(stage.value, `${stage.count} (${share}%)`, `${role} ${stage.stage}: printed count`);
          assert.ok(Math.abs(stage.width / invited.width - stage.count / invited.count) < 0.001, `${role} ${stage.stage}: bar length in proportion`);
          assert.ok(stage.title.startsWith(`${words.roleGroups[role]}, `), `${role} ${stage.stage}: title names the role`);
          assert.ok(stage.title.includes(`: ${stage.count} ${words.of} ${invited.count} (${share}%)`), `${role} ${stage.stage}: title gives the count`);
        }
      }
    });

    it('draws the weekly trend', () => {
      assert.equal(dashboard.minCellSize, 10, 'the default minimum cell size');
      assertTrend(dashboard.trend, dashboard.minCellSize, words, false);
    });

    it('gives screen readers every count', async () => {
      // The tooltip of each bar, cell, stage and week point must also be in the chart's
      // description, because screen readers do not enter an SVG with role="img".
      const charts = await page.evaluate(() =>
        [...document.querySelectorAll('svg.chart')].map(svg => ({
          name: svg.getAttribute('aria-label') || document.getElementById(svg.getAttribute('aria-labelledby'))?.textContent,
          titles: [...svg.querySelectorAll('g > title, circle > title')].map(title => title.textContent),
        })),
      );
      const alternatives = await chartAlternatives(page);
      assert.deepEqual(
        alternatives.map(alternative => alternative.name),
        charts.map(chart => chart.name),
        'each chart is one named image in the accessibility tree',
      );
      for (const chart of charts) {
        const { description } = alternatives.find(alternative => alternative.name === chart.name);
        assert.ok(chart.titles.length > 0, `chart "${chart.name}" has tooltips`);
        for (const title of chart.titles) {
          assert.ok(description.includes(title), `chart "${chart.name}" describes "${title}"`);
        }
      }
      assert.deepEqual(await axeViolations(page), [], 'axe violations');
      assert.deepEqual(await cspViolations(page), [], 'CSP violations');
      assert.deepEqual(page.log, [], 'console errors and warnings');
    });

    it('prints without controls', async () => {
      const viewport = page.viewportSize();
      try {
        await page.emulateMedia({ media: 'print' });
        await page.setViewportSize({ width: A4_PRINT_WIDTH, height: 1000 });

        for (const selector of ['form.filters', 'form.logout', '.print-hint', 'header .meta .language']) {
          assert.equal(await page.locator(selector).isVisible(), false, `${selector} is hidden in print`);
        }
        assert.equal(await page.locator('h1').isVisible(), true, 'the title stays');

        const charts = await page.evaluate(() =>
          [...document.querySelectorAll('svg.chart')].map(svg => {
            const box = svg.getBoundingClientRect();
            return { name: svg.getAttribute('class'), width: box.width, height: box.height, display: getComputedStyle(svg).display };
          }),
        );
        assert.equal(charts.length, 5, 'items, heat map, two funnels and trend');
        for (const chart of charts) {
          assert.notEqual(chart.display, 'none', `${chart.name} is printed`);
          assert.ok(chart.width > 100, `${chart.name} keeps its width: ${chart.width} px`);
          assert.ok(chart.height > 100, `${chart.name} keeps its height: ${chart.height} px`);
        }

        const overflow = await horizontalOverflow(page);
        assert.ok(overflow.scrollWidth <= overflow.clientWidth, `nothing is wider than A4 paper: ${JSON.stringify(overflow)}`);
        assert.deepEqual(overflow.offenders, [], 'elements past the right edge of A4 paper');
      } finally {
        await page.emulateMedia({ media: 'screen' });
        await page.setViewportSize(viewport);
      }
    });

    it('saves a full-page screenshot', async () => {
      const name = `dashboard-${lang}.png`;
      const target = process.env.ALLIANCE_DOCS_SCREENSHOTS === '1' ? path.join(ROOT, 'docs', name) : path.join(screenshotDir, name);
      const image = await page.screenshot({ path: target, fullPage: true });
      const size = pngSize(image);
      assert.equal(size.width, SCREENSHOT_WIDTH);
      assert.ok(size.height > 2000, `the whole page is captured: ${size.height} px high`);
    });
  });
}

describe('weekly trend without suppression', { timeout: TEST_TIMEOUT_MS }, () => {
  let unsuppressed;
  let page;

  before(
    async () => {
      // A minimum cell size of 1 shows every week, so the weeks must add up to the totals.
      unsuppressed = await startDemo({ env: { ALLIANCE_MIN_CELL_SIZE: '1' } });
      const ownContext = await browser.newContext({ viewport: { width: SCREENSHOT_WIDTH, height: 900 } });
      page = await openPage(ownContext, unsuppressed.loginLink);
      await page.getByRole('heading', { level: 1, name: WORDS.nl.title }).waitFor();
    },
    { timeout: HOOK_TIMEOUT_MS },
  );

  after(async () => {
    await page?.context().close();
    const code = await unsuppressed?.stop();
    assert.equal(code, 0, `alliance demo exits cleanly on SIGINT:\n${unsuppressed?.stderr()}`);
  });

  it('adds up to all pairs', async () => {
    const dashboard = await readDashboard(page);
    assert.equal(dashboard.minCellSize, 1);
    assertTrend(dashboard.trend, 1, WORDS.nl, true);
  });
});
