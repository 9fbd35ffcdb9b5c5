// <alliance-questionnaire token="…" lang="nl|en" api-base="…" heading-level="2">
// The 11-item alliance questionnaire (VOA) that a parent and a nurse fill in after a chat.
// Plain ES module without dependencies. The server sends it as it is.

const TEXT = {
  nl: {
    loading: 'De vragenlijst wordt geladen…',
    titleParent: 'Hoe vond je de chat?',
    titlePro: 'Hoe ging de chat?',
    purpose: n => `Je hebt net gechat over opvoeden. We willen de chat beter maken. Daarom stellen we je ${n} korte vragen.`,
    time: 'Het duurt ongeveer een minuut.',
    anonymous: 'Je doet anoniem mee. We vragen niet naar je naam.',
    readers: 'Het team van de chat leest je antwoorden.',
    readersNurse: 'Het team van de chat leest je antwoorden. De jeugdverpleegkundige met wie je chatte, leest ze ook.',
    privacy: ['Meer over je privacy lees je in de ', 'privacyverklaring', ' (opent in een nieuw tabblad).'],
    how: 'Kies bij elke zin wat het beste past.',
    introPro: 'Hoe ging de samenwerking in deze chat volgens jou? Het kost ongeveer een minuut.',
    declineAsk: 'Wil je niet meedoen?',
    decline: 'Nee, liever niet',
    unanswered: 'Nog niet beantwoord',
    progress: (done, total) => `${done} van ${total} beantwoord`,
    commentLabel: 'Wil je nog iets zeggen over de chat? (niet verplicht)',
    commentHint: ['We lezen je opmerking niet meteen. Maak je je zorgen over de veiligheid van een kind? Bel dan Veilig Thuis: ', ' (gratis). Is er direct gevaar? Bel ', '.'],
    count: (used, max) => `${used} van ${max} tekens`,
    submit: 'Versturen',
    missing: list => `Je hebt nog niet alle vragen beantwoord. Nog open: vraag ${list}.`,
    offline: 'Er is geen verbinding. Je antwoorden blijven op dit apparaat. We versturen ze als je weer online bent.',
    retrying: 'Opslaan lukt nu even niet. Je antwoorden blijven op dit apparaat. We proberen het zo opnieuw.',
    noConnection: 'Er is geen verbinding. Probeer het opnieuw als je weer online bent.',
    failed: 'Er ging iets mis. Probeer het later opnieuw.',
    close: 'Je kunt deze pagina nu sluiten.',
    sent: ['Bedankt!', 'Je antwoorden zijn verstuurd.'],
    sentParent: 'Zo help je ons de chat beter te maken.',
    declined: ['Helemaal goed', 'Je doet niet mee. Bedankt voor je tijd.'],
    done: ['Al verstuurd', 'Deze vragenlijst is al ingevuld en verstuurd. Bedankt!'],
    expired: ['Verlopen', 'Deze vragenlijst is verlopen. Je kunt hem niet meer invullen.'],
    notFound: ['Niet gevonden', 'We kunnen deze vragenlijst niet vinden. Kijk of de link klopt.'],
    loadFailed: ['Laden lukt niet', 'De vragenlijst kan nu niet laden. Kijk of je internet hebt en probeer het opnieuw.'],
    busy: ['Even wachten', 'Er komen nu veel verzoeken binnen. Wacht een minuut en probeer het dan opnieuw.'],
    broken: ['Er ging iets mis', 'De vragenlijst kan nu niet worden getoond. Probeer het later opnieuw.'],
    retry: 'Opnieuw proberen',
    feedback: ['Jouw antwoorden en die van de ouder', 'Ouder', 'Jij'],
    feedbackNone: 'Je ziet hier de antwoorden van de ouder als die er zijn. Voor deze chat zijn ze er nu niet.',
  },
  en: {
    loading: 'Loading the questionnaire…',
    titleParent: 'What did you think of the chat?',
    titlePro: 'How did the chat go?',
    purpose: n => `You just had a chat about parenting. We want to make the chat better. That is why we ask you ${n} short questions.`,
    time: 'It takes about a minute.',
    anonymous: 'You take part anonymously. We do not ask for your name.',
    readers: 'The team that runs the chat reads your answers.',
    readersNurse: 'The team that runs the chat reads your answers. The nurse you chatted with reads them too.',
    privacy: ['Read more about your privacy in the ', 'privacy notice', ' (opens in a new tab).'],
    how: 'For each sentence, choose what fits best.',
    introPro: 'How did the working relationship in this chat go, in your view? It takes about a minute.',
    declineAsk: 'Rather not take part?',
    decline: 'No, thanks',
    unanswered: 'Not answered yet',
    progress: (done, total) => `${done} of ${total} answered`,
    commentLabel: 'Anything else you want to say about the chat? (optional)',
    commentHint: ['We do not read your comment straight away. Worried about the safety of a child? Call Veilig Thuis: ', ' (free). In an emergency, call ', '.'],
    count: (used, max) => `${used} of ${max} characters`,
    submit: 'Send',
    missing: list => `Not all questions are answered yet. Still open: question ${list}.`,
    offline: 'There is no connection. Your answers stay on this device. We send them when you are back online.',
    retrying: 'Saving does not work right now. Your answers stay on this device. We will try again soon.',
    noConnection: 'There is no connection. Please try again when you are back online.',
    failed: 'Something went wrong. Please try again later.',
    close: 'You can close this page now.',
    sent: ['Thank you!', 'Your answers have been sent.'],
    sentParent: 'You are helping us make the chat better.',
    declined: ['That is fine', 'You are not taking part. Thank you for your time.'],
    done: ['Already sent', 'This questionnaire has already been filled in and sent. Thank you!'],
    expired: ['Expired', 'This questionnaire has expired. It can no longer be filled in.'],
    notFound: ['Not found', 'We cannot find this questionnaire. Please check the link.'],
    loadFailed: ['Could not load', 'The questionnaire cannot load right now. Check your internet connection and try again.'],
    busy: ['Please wait', 'Many requests are coming in right now. Wait a minute, then try again.'],
    broken: ['Something went wrong', 'The questionnaire cannot be shown right now. Please try again later.'],
    retry: 'Try again',
    feedback: ['Your answers and the parent\'s', 'Parent', 'You'],
    feedbackNone: 'The parent\'s answers show here when they are available. For this chat they are not available now.',
  },
};

// Theming: the host page sets the public --alliance-* properties. The private --_* ones
// hold them with their defaults, so each default is written once.
const CSS = `
:host{display:block}
:host([hidden]){display:none}
.aq{all:initial;display:block;color-scheme:light;font:var(--alliance-font-size,medium)/1.5 var(--alliance-font,system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif);color:var(--_text);background:var(--alliance-bg,#fff);overflow-wrap:break-word;container-type:inline-size;
--_accent:var(--alliance-accent,#0b5cad);--_on-accent:var(--alliance-on-accent,#fff);--_soft:var(--alliance-accent-soft,#e7f0fa);--_text:var(--alliance-text,#1b1b1b);--_muted:var(--alliance-muted,#4d4d4d);--_border:var(--alliance-border,#767676);--_error:var(--alliance-error,#b3261e);--_focus:var(--alliance-focus,#1b1b1b);--_radius:var(--alliance-radius,8px)}
*,::before,::after{box-sizing:border-box}
.title{font-size:1.5em;line-height:1.25;margin:0 0 .75em}
[tabindex="-1"]:focus{outline:none}
p{margin:0 0 .75em}
a{color:var(--_accent)}
.muted,.count{color:var(--_muted)}
.stem{font-weight:700;font-size:1.125em;margin:1.5em 0 .75em}
fieldset{border:1px solid var(--_border);border-radius:var(--_radius);margin:0 0 1em;padding:.75em 1em 1em;min-width:0}
fieldset.miss{border:2px solid var(--_error)}
legend{float:left;width:100%;padding:0;margin:0 0 .5em}
.element{display:block;font-size:.875em;color:var(--_muted)}
.item{display:block;font-weight:600;font-size:1.0625em}
.vh{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%);white-space:nowrap}
.opts{clear:both;display:grid;grid-template-columns:minmax(0,1fr);gap:.5em}
.opts span{min-width:0;overflow-wrap:anywhere;hyphens:auto}
@container (min-width:32em){.opts{grid-template-columns:repeat(3,minmax(0,1fr))}}
@container (max-width:18em){fieldset{padding:.5em .5em .75em}.opts label{padding:.5em}}
.opts label{display:flex;align-items:center;gap:.6em;min-height:44px;padding:.5em .75em;border:2px solid var(--_border);border-radius:var(--_radius);cursor:pointer}
.opts label:hover{border-color:var(--_accent)}
.opts label:has(:checked){border-color:var(--_accent);background:var(--_soft)}
input{font:inherit;width:1.25em;height:1.25em;margin:0;flex:none;accent-color:var(--_accent)}
:focus-visible{outline:3px solid var(--_focus);outline-offset:2px}
@supports selector(:has(a)){.opts input:focus-visible{outline:none}.opts label:has(:focus-visible){outline:3px solid var(--_focus);outline-offset:2px}}
.note{clear:both;margin:.5em 0 0;color:var(--_error);font-weight:600}
label.comment{display:block;font-weight:600;margin:1.5em 0 .25em}
textarea{display:block;width:100%;min-height:6em;font:inherit;color:inherit;background:var(--alliance-bg,#fff);padding:.5em;border:1px solid var(--_border);border-radius:var(--_radius);resize:vertical}
.count{margin:.25em 0 1em;font-size:.875em}
.progress{font-weight:600}
.msg{font-weight:600}
.msg.err{color:var(--_error)}
.msg:empty,[hidden]{display:none}
button{font:inherit;min-height:44px;min-width:44px;padding:.5em 1.25em;border:2px solid var(--_accent);border-radius:var(--_radius);cursor:pointer;background:var(--alliance-bg,#fff);color:var(--_accent)}
button.primary{background:var(--_accent);color:var(--_on-accent)}
`;

const STORE_PREFIX = 'alliance-questionnaire:';
const TERMINAL = ['sent', 'declined', 'done', 'expired', 'notFound'];
const RETRY_MS = 15000;
const TIMEOUT_MS = 20000;

let sheet; // one constructable stylesheet shared by every instance

const escape = value => String(value).replace(/[&<>"']/g, c => `&#${c.charCodeAt(0)};`);

// Returns the URL (relative ones resolved against the page) if it is http(s), so that an
// API value can never become a javascript: link. Returns '' for anything else.
function safeUrl(value) {
  if (!value) return '';
  try {
    const url = new URL(value, location.href);
    return /^https?:$/.test(url.protocol) ? url.href : '';
  } catch {
    return '';
  }
}

class AllianceQuestionnaire extends HTMLElement {
  static get observedAttributes() {
    return ['token', 'lang', 'api-base'];
  }

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    // NOTE: constructable stylesheets need Chromium 73+, Firefox 101+ or Safari 16.4+
    // (MDN compatibility data). The CSP blocks <style> elements, so older browsers show
    // the questionnaire unstyled but usable.
    if ('adoptedStyleSheets' in root) {
      if (!sheet) {
        sheet = new CSSStyleSheet();
        sheet.replaceSync(CSS);
      }
      root.adoptedStyleSheets = [sheet];
    }
    root.addEventListener('change', event => this.onChange(event));
    root.addEventListener('input', event => this.onInput(event));
    root.addEventListener('click', event => this.onClick(event));
    this.onOnline = () => this.resume();
    this.loadCount = 0;
  }

  connectedCallback() {
    this.started = true;
    window.addEventListener('online', this.onOnline);
    this.load();
  }

  disconnectedCallback() {
    this.started = false;
    window.removeEventListener('online', this.onOnline);
    clearTimeout(this.retryTimer);
    this.retryTimer = 0;
    this.loadCount++; // discards responses that arrive after removal
  }

  attributeChangedCallback(name, oldValue, newValue) {
    // On upgrade this runs once per attribute before connectedCallback, which does the first load.
    if (this.started && oldValue !== newValue) this.load();
  }

  get ui() {
    return (this.getAttribute('lang') || '').toLowerCase().startsWith('en') ? 'en' : 'nl';
  }

  get text() {
    return TEXT[this.ui];
  }

  get token() {
    return this.getAttribute('token') || '';
  }

  get storeKey() {
    return STORE_PREFIX + this.token;
  }

  // Sends one API request. Resolves to {status, body}, with status 0 when the network failed or timed out.
  async request(method, path, body) {
    const base = (this.getAttribute('api-base') || '').replace(/\/+$/, '');
    const init = { method, credentials: 'omit', cache: 'no-store', headers: { Accept: 'application/json' } };
    if (body) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    if (AbortSignal.timeout) init.signal = AbortSignal.timeout(TIMEOUT_MS);
    try {
      const response = await fetch(`${base}/api/questionnaires/${encodeURIComponent(this.token)}${path}`, init);
      const result = await response.json().catch(() => ({}));
      return { status: response.status, body: result || {} };
    } catch {
      return { status: 0, body: {} };
    }
  }

  readStore() {
    try {
      return JSON.parse(localStorage.getItem(this.storeKey)) || {};
    } catch {
      return {};
    }
  }

  // Mirrors the unsent answers to localStorage, or removes the key when all are sent.
  writeStore() {
    try {
      if (Object.keys(this.pending).length) localStorage.setItem(this.storeKey, JSON.stringify(this.pending));
      else localStorage.removeItem(this.storeKey);
    } catch {
      // Storage is off or full: the answers stay in memory while the page is open.
    }
  }

  async load() {
    const loadId = ++this.loadCount;
    this.questionnaire = null;
    this.pending = {};
    this.answers = {};
    this.busy = false;
    this.submitWaiting = false;
    this.flushing = null; // a pass of the previous load stops after its current request
    this.view = 'loading';
    this.shadowRoot.innerHTML = `<div class="aq" lang="${this.ui}"><p class="muted" role="status">${this.text.loading}</p></div>`;

    const { status, body } = await this.request('GET', `?lang=${this.ui}`);
    if (loadId !== this.loadCount) return;
    // Too many calls for this questionnaire: the connection is fine, so the parent is asked to wait.
    if (status === 429) return this.showEnd('busy');
    if (status !== 200) return this.showFailure(status, 'loadFailed');

    const valid = Array.isArray(body.items) && body.items.length && Array.isArray(body.scale) && body.scale.length;
    if (!valid) return this.showEnd('broken');
    const ends = { submitted: 'done', declined: 'declined', expired: 'expired' };
    if (ends[body.status]) return this.showEnd(ends[body.status], false, body);

    // Answers stored on this device were given after the server's copy, so they win.
    const numbers = body.items.map(item => String(item.number));
    const ratings = body.scale.map(option => option.value);
    const stored = this.readStore();
    for (const number of numbers) {
      if (ratings.includes(stored[number])) this.pending[number] = stored[number];
    }
    this.answers = { ...(body.answers || {}), ...this.pending };
    this.questionnaire = body;
    this.renderForm();
    this.flush();
  }

  renderForm() {
    const t = this.text;
    const q = this.questionnaire;
    const parent = q.role !== 'professional';
    const heading = this.headingTag();
    const max = q.comment_max_chars || 1000;
    const privacyUrl = safeUrl(q.privacy_url);

    let intro = `<p>${escape(t.introPro)}</p>`;
    if (parent) {
      intro = `<p>${escape(t.purpose(q.items.length))} ${t.time}</p><p>${t.anonymous} ${q.nurse_feedback ? t.readersNurse : t.readers}</p>`;
      if (privacyUrl) {
        const [before, link, after] = t.privacy;
        intro += `<p>${before}<a href="${escape(privacyUrl)}" target="_blank" rel="noopener noreferrer">${link}</a>${after}</p>`;
      }
      intro += `<p>${t.how}</p>`;
    }

    const items = q.items.map(item => {
      const n = escape(item.number);
      const options = q.scale.map(option => {
        const checked = this.answers[item.number] === option.value ? ' checked' : '';
        return `<label><input type="radio" name="q${n}" value="${escape(option.value)}"${checked}><span>${escape(option.label)}</span></label>`;
      }).join('');
      const element = item.element ? ` ${escape(item.element)}` : '';
      return `<fieldset id="item-${n}"><legend><span class="element">${n}.${element}</span><span class="vh">${escape(q.stem)} </span><span class="item">${escape(item.text)}</span></legend><div class="opts">${options}</div><p class="note" id="note-${n}" hidden>${t.unanswered}</p></fieldset>`;
    }).join('');

    const [hintBefore, hintMiddle, hintAfter] = t.commentHint;
    this.shadowRoot.innerHTML = `<div class="aq" lang="${this.ui}">
<${heading} class="title" tabindex="-1">${parent ? t.titleParent : t.titlePro}</${heading}>
${intro}
<p>${t.declineAsk} <button type="button" data-action="decline">${t.decline}</button></p>
<p class="msg err" id="decline-msg" role="status"></p>
<p class="stem" lang="${escape(q.lang || this.ui)}">${escape(q.stem)}</p>
<div lang="${escape(q.lang || this.ui)}">${items}</div>
<label class="comment" for="comment">${t.commentLabel}</label>
<p class="muted" id="comment-hint">${hintBefore}<a href="tel:08002000">0800-2000</a>${hintMiddle}<a href="tel:112">112</a>${hintAfter}</p>
<textarea id="comment" maxlength="${escape(max)}" aria-describedby="comment-hint comment-count"></textarea>
<p class="count" id="comment-count">${t.count(0, escape(max))}</p>
<p class="progress" role="status">${this.progressText()}</p>
<p class="msg" id="msg" role="status"></p>
<p><button type="button" class="primary" data-action="submit">${t.submit}</button></p>
</div>`;
    this.view = 'form';
  }

  headingTag() {
    const level = parseInt(this.getAttribute('heading-level'), 10);
    return `h${level >= 1 && level <= 6 ? level : 2}`;
  }

  $(selector) {
    return this.shadowRoot.querySelector(selector);
  }

  progressText() {
    const items = this.questionnaire.items;
    const done = items.filter(item => this.answers[item.number]).length;
    return this.text.progress(done, items.length);
  }

  updateProgress() {
    this.$('.progress').textContent = this.progressText();
  }

  // Shows a message near the submit button (or in `target`). Network messages ('net')
  // disappear by themselves once the answers are sent.
  say(message, kind = 'err', target = '#msg') {
    const element = this.$(target);
    if (!element) return;
    element.textContent = message;
    element.classList.toggle('err', kind === 'err');
    element.dataset.kind = kind;
  }

  setMissing(number, missing) {
    const fieldset = this.$(`#item-${number}`);
    if (!fieldset) return;
    fieldset.classList.toggle('miss', missing);
    this.$(`#note-${number}`).hidden = !missing;
    // A hidden description is still read out when referenced, so drop the reference.
    if (missing) fieldset.setAttribute('aria-describedby', `note-${number}`);
    else fieldset.removeAttribute('aria-describedby');
  }

  onChange(event) {
    const input = event.target;
    if (input.type !== 'radio' || !this.questionnaire) return;
    const number = input.name.slice(1);
    this.answers[number] = input.value;
    this.pending[number] = input.value;
    this.writeStore();
    this.setMissing(number, false);
    this.updateProgress();
    this.flush();
  }

  onInput(event) {
    const field = event.target;
    if (field.id !== 'comment') return;
    this.$('#comment-count').textContent = this.text.count(field.value.length, field.maxLength);
  }

  onClick(event) {
    const button = event.target.closest('button[data-action]');
    if (!button) return;
    const action = button.dataset.action;
    if (action === 'submit') this.submit();
    else if (action === 'decline') this.decline();
    else if (action === 'retry') this.load();
  }

  // Sends the unsent answers one at a time, so that a changed answer cannot overtake the
  // older one. Concurrent callers share the running pass.
  flush() {
    if (!this.flushing) this.flushing = this.sendPending().finally(() => { this.flushing = null; });
    return this.flushing;
  }

  async sendPending() {
    const questionnaire = this.questionnaire;
    for (;;) {
      const number = Object.keys(this.pending)[0];
      if (!number || questionnaire !== this.questionnaire) return;
      const rating = this.pending[number];
      const { status } = await this.request('PUT', `/items/${encodeURIComponent(number)}`, { rating });
      if (questionnaire !== this.questionnaire) return;

      if (status === 200 || status === 422) {
        // A 422 (invalid rating or item) fails on every retry, so that answer is dropped.
        if (this.pending[number] === rating) delete this.pending[number];
        this.writeStore();
        if (status === 422) this.say(this.text.failed);
        else if (this.$('#msg').dataset.kind === 'net') this.say('');
        continue;
      }
      if ([404, 409, 410].includes(status)) return this.showFailure(status);
      this.say(status ? this.text.retrying : this.text.offline, 'net');
      this.retryLater();
      return;
    }
  }

  retryLater() {
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = 0;
      this.resume();
    }, RETRY_MS);
  }

  // Runs when the connection returns or the retry timer fires.
  async resume() {
    if (!this.questionnaire) {
      if (['loadFailed', 'busy'].includes(this.view)) this.load();
      return;
    }
    await this.flush();
    if (this.submitWaiting && !Object.keys(this.pending).length) this.submit();
  }

  showMissing(numbers) {
    const t = this.text;
    const known = this.questionnaire.items.map(item => String(item.number));
    const missing = numbers.map(String).filter(number => known.includes(number));
    if (!missing.length) return this.say(t.failed);
    for (const item of this.questionnaire.items) {
      const number = String(item.number);
      const isMissing = missing.includes(number);
      // The server has no answer for this item, so an answer shown here was never saved.
      if (isMissing && this.answers[number]) {
        delete this.answers[number];
        for (const input of this.shadowRoot.querySelectorAll(`input[name="q${number}"]`)) input.checked = false;
      }
      this.setMissing(number, isMissing);
    }
    this.updateProgress();
    const list = Intl.ListFormat ? new Intl.ListFormat(this.ui).format(missing) : missing.join(', ');
    this.say(t.missing(list));
    const first = this.$(`#item-${missing[0]} input`);
    if (first) first.focus();
  }

  async submit() {
    if (this.busy || !this.questionnaire) return;
    const missing = this.questionnaire.items.filter(item => !this.answers[item.number]).map(item => item.number);
    if (missing.length) return this.showMissing(missing);

    this.busy = true;
    this.submitWaiting = false;
    await this.flush();
    if (Object.keys(this.pending).length) {
      // sendPending has shown why and set a retry, and resume() submits after that.
      this.busy = false;
      this.submitWaiting = true;
      return;
    }
    const comment = this.$('#comment').value.trim();
    const { status, body } = await this.request('POST', '/submit', comment ? { comment } : {});
    this.busy = false;

    if (status === 200) {
      // With nurse feedback on, the parent's answers can be read once the nurse has sent hers.
      const q = this.questionnaire;
      const after = q.role === 'professional' && q.nurse_feedback ? (await this.request('GET', `?lang=${this.ui}`)).body : null;
      return this.showEnd('sent', true, after);
    }
    if (status === 422 && Array.isArray(body.missing) && body.missing.length) return this.showMissing(body.missing);
    if ([404, 409, 410].includes(status)) return this.showFailure(status);
    if (status === 0 || status === 429 || status >= 500) {
      this.submitWaiting = true;
      this.say(status ? this.text.retrying : this.text.offline, 'net');
      this.retryLater();
      return;
    }
    this.say(this.text.failed);
  }

  async decline() {
    if (this.busy) return;
    this.busy = true;
    const { status } = await this.request('POST', '/decline', {});
    this.busy = false;
    if (status === 200) return this.showEnd('declined', true);
    if ([404, 409, 410].includes(status)) return this.showFailure(status);
    this.say(status ? this.text.failed : this.text.noConnection, 'err', '#decline-msg');
  }

  showFailure(status, fallback) {
    const views = { 404: 'notFound', 409: 'done', 410: 'expired' };
    if (views[status]) return this.showEnd(views[status], !fallback); // no focus move on load
    if (fallback) return this.showEnd(fallback);
    this.say(this.text.failed);
  }

  // Replaces the form with a final screen. `focus` moves focus to its heading, which
  // happens only after a user action, so that loading the page does not jump. `q` is a
  // questionnaire read after sending; a nurse's one may carry the parent's answers.
  showEnd(view, focus, q) {
    const t = this.text;
    const [title, message] = t[view];
    const parent = this.questionnaire && this.questionnaire.role !== 'professional';
    let extra = '';
    const heading = this.headingTag();
    if (view === 'sent' && parent) extra += `<p>${t.sentParent}</p>`;
    if (q && q.role === 'professional' && q.nurse_feedback && Array.isArray(q.items)) extra += this.feedback(q, heading);
    if (['sent', 'declined', 'done'].includes(view)) extra += `<p>${t.close}</p>`;
    if (['loadFailed', 'busy'].includes(view)) extra += `<p><button type="button" class="primary" data-action="retry">${t.retry}</button></p>`;
    if (TERMINAL.includes(view)) {
      this.pending = {};
      this.writeStore();
    }

    this.view = view;
    this.questionnaire = null;
    this.submitWaiting = false;
    this.shadowRoot.innerHTML = `<div class="aq" lang="${this.ui}"><${heading} class="title" tabindex="-1">${title}</${heading}><p>${message}</p>${extra}</div>`;
    if (focus) this.$('.title').focus();
  }

  // The parent's answers beside the nurse's own, per item; only the nurse's questionnaire has them.
  feedback(q, heading) {
    const [title, parent, you] = this.text.feedback;
    const theirs = q.parent_answers;
    if (!theirs) return `<p>${this.text.feedbackNone}</p>`;
    const label = value => escape((q.scale.find(option => option.value === value) || {}).label || '–');
    const mine = q.answers || {};
    const sub = `h${Math.min(+heading.slice(1) + 1, 6)}`;
    const rows = q.items.map(item => `<li><span class="item">${escape(item.number)}. ${escape(item.element || item.text)}</span>${parent}: ${label(theirs[item.number])}. ${you}: ${label(mine[item.number])}.</li>`).join('');
    return `<${sub} class="stem">${title}</${sub}><ul>${rows}</ul>`;
  }
}

if (!customElements.get('alliance-questionnaire')) {
  customElements.define('alliance-questionnaire', AllianceQuestionnaire);
}
