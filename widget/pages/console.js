// The Chatwoot Dashboard App page (GET /console/chatwoot): shows the nurse's questionnaire
// for the conversation that Chatwoot has open.
//
// Chatwoot's appContext message is unsigned, so it only names the conversation. The nurse's
// personal console code, pasted once and kept in this frame's localStorage, proves who she is:
// the server returns a token only when the code belongs to the nurse of that conversation.

const CODE_KEY = 'alliance-console-code';

const TEXT = {
  nl: {
    title: 'Vragenlijst over dit gesprek',
    codeLabel: 'Je persoonlijke consolecode',
    codeHint: 'Je vindt de code op je eigen vragenlijstpagina, onder ‘Vragenlijst in je chatconsole’. Je plakt hem één keer.',
    save: 'Code opslaan',
    invalidCode: 'Deze code klopt niet. Plak de code van je vragenlijstpagina.',
    waiting: 'Open een gesprek in Chatwoot om de vragenlijst te zien.',
    loading: 'De vragenlijst wordt geladen…',
    none: 'Voor dit gesprek is er geen vragenlijst voor jou. Misschien is het gesprek nog niet afgesloten. Of de code hoort bij een collega.',
    failed: 'De vragenlijst kan nu niet laden. Probeer het later opnieuw.',
    notKept: 'Deze browser bewaart de code niet. Na het sluiten plak je hem opnieuw.',
    forget: 'Andere code invullen',
  },
  en: {
    title: 'Questionnaire about this conversation',
    codeLabel: 'Your personal console code',
    codeHint: 'You find the code on your own questionnaire page, under ‘Questionnaire in your chat console’. You paste it once.',
    save: 'Save code',
    invalidCode: 'This code is not valid. Paste the code from your questionnaire page.',
    waiting: 'Open a conversation in Chatwoot to see the questionnaire.',
    loading: 'Loading the questionnaire…',
    none: 'There is no questionnaire for you in this conversation. The conversation may not have ended yet, or the code belongs to a colleague.',
    failed: 'The questionnaire cannot load right now. Please try again later.',
    notKept: 'This browser does not keep the code. Paste it again after closing.',
    forget: 'Enter another code',
  },
};

const main = document.getElementById('console');
const lang = main.dataset.lang === 'en' ? 'en' : 'nl';
const text = TEXT[lang];
const origins = (main.dataset.origins || '').split(' ').filter(Boolean);
const status = document.getElementById('console-status');

let conversationId = '';
let memoryCode = '';
let exchangeCount = 0;

// In a cross-site frame the browser partitions or blocks storage, so each step falls back:
// localStorage, then sessionStorage, then memory while the page is open.
function readCode() {
  for (const storage of ['localStorage', 'sessionStorage']) {
    try {
      const code = window[storage].getItem(CODE_KEY);
      if (code) return code;
    } catch {
      // This storage is blocked in this frame; try the next one.
    }
  }
  return memoryCode;
}

function writeCode(code) {
  memoryCode = code;
  for (const storage of ['localStorage', 'sessionStorage']) {
    try {
      if (code) window[storage].setItem(CODE_KEY, code);
      else window[storage].removeItem(CODE_KEY);
      return true;
    } catch {
      // Blocked; try the next one.
    }
  }
  return false;
}

function element(tag, attributes = {}, content = '') {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.textContent = content;
  return node;
}

function clearView() {
  for (const node of [...main.children]) {
    if (node !== status && node.tagName !== 'NOSCRIPT') node.remove();
  }
  status.textContent = '';
}

function showSetup(error) {
  clearView();
  const form = element('form', { class: 'console-setup', novalidate: '' });
  form.append(
    element('h1', {}, text.title),
    element('label', { for: 'console-code' }, text.codeLabel),
    element('p', { id: 'console-code-hint', class: 'console-hint' }, text.codeHint),
    element('input', {
      id: 'console-code',
      name: 'code',
      type: 'text',
      autocomplete: 'off',
      spellcheck: 'false',
      'aria-describedby': error ? 'console-code-hint console-code-error' : 'console-code-hint',
      ...(error ? { 'aria-invalid': 'true' } : {}),
    }),
  );
  if (error) form.append(element('p', { id: 'console-code-error', class: 'console-error' }, error));
  form.append(element('button', { type: 'submit' }, text.save));
  form.addEventListener('submit', event => {
    event.preventDefault();
    const code = form.elements.code.value.trim();
    if (!/^[0-9a-fA-F\s-]{32,64}$/.test(code)) return showSetup(text.invalidCode);
    const kept = writeCode(code);
    exchange(kept ? '' : text.notKept);
  });
  main.append(form);
  if (error) form.elements.code.focus();
}

function showMessage(message) {
  clearView();
  main.append(element('h1', {}, text.title));
  status.textContent = message;
}

function forgetButton() {
  const button = element('button', { type: 'button', class: 'console-forget' }, text.forget);
  button.addEventListener('click', () => {
    writeCode('');
    showSetup();
  });
  const paragraph = element('p');
  paragraph.append(button);
  return paragraph;
}

// Exchanges the stored code and the open conversation for the nurse's token and shows her
// questionnaire. A newer call (another conversation) makes older answers void.
async function exchange(notice = '') {
  const code = readCode();
  if (!code) return showSetup();
  if (!conversationId) return showMessage(text.waiting);

  const exchangeId = ++exchangeCount;
  showMessage(text.loading);
  let response;
  try {
    response = await fetch('/api/console/token', {
      method: 'POST',
      credentials: 'omit',
      cache: 'no-store',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ code, conversation_id: conversationId }),
    });
  } catch {
    response = null;
  }
  if (exchangeId !== exchangeCount) return;
  if (response?.status === 422) return showSetup(text.invalidCode);
  if (response?.status === 404) {
    showMessage(text.none);
    main.append(forgetButton());
    return;
  }
  const body = response?.ok ? await response.json().catch(() => ({})) : {};
  if (!body.token) return showMessage(text.failed);

  clearView();
  const questionnaire = element('alliance-questionnaire', { token: body.token, lang, 'heading-level': '1' });
  main.append(questionnaire);
  if (notice) status.textContent = notice;
  main.append(forgetButton());
}

// Chatwoot sends the context as a JSON string; accept an object too.
function conversationFrom(data) {
  let message = data;
  if (typeof data === 'string') {
    try {
      message = JSON.parse(data);
    } catch {
      return '';
    }
  }
  if (!message || message.event !== 'appContext') return '';
  const id = message.data?.conversation?.id;
  return typeof id === 'number' || typeof id === 'string' ? String(id) : '';
}

window.addEventListener('message', event => {
  // Only the configured platform origins may choose the conversation.
  if (!origins.includes(event.origin)) return;
  const id = conversationFrom(event.data);
  if (!id || id === conversationId) return;
  conversationId = id;
  exchange();
});

if (window.parent !== window) {
  // The request carries no data, so any origin may receive it.
  window.parent.postMessage('chatwoot-dashboard-app:fetch-info', '*');
}
exchange();
