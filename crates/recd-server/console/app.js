// The console's shell: the views behind the hash (#/playground, #/metrics, ...), the API
// key dialog, and the one place failures are announced.

import { api, explain, getKey, setKey } from './api.js';
import * as playground from './playground.js';
import * as operator from './operator.js';
import * as browse from './browse.js';
import * as experiments from './experiments.js';
import * as drift from './drift.js';
import * as models from './models.js';

const VIEWS = {
  playground: { title: 'Playground', mount: playground.mount },
  metrics: { title: 'Metrics', mount: operator.mount },
  items: { title: 'Items', mount: browse.mountItems },
  users: { title: 'Users', mount: browse.mountUsers },
  experiments: { title: 'Experiments', mount: experiments.mount },
  drift: { title: 'Drift', mount: drift.mount },
  models: { title: 'Models', mount: models.mount },
};

const main = document.getElementById('main');
const notice = document.getElementById('notice');
let unmount = null;

/** Shows a message to everyone (role=alert); `info` for the harmless ones. */
export function announce(message, kind = 'error') {
  if (!message) {
    notice.hidden = true;
    notice.textContent = '';
    return;
  }
  notice.className = `notice ${kind === 'info' ? 'info' : ''}`;
  notice.textContent = message;
  notice.hidden = false;
}

/** Announces a failed call in words a person can act on. */
export function fail(err) {
  announce(explain(err));
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [name, query] = raw.split('?');
  return { name: VIEWS[name] ? name : 'playground', params: new URLSearchParams(query || '') };
}

async function route() {
  const { name, params } = parseHash();
  if (unmount) {
    try { unmount(); } catch { /* a view that failed to mount */ }
    unmount = null;
  }
  announce('');
  for (const a of document.querySelectorAll('.top nav a')) {
    if (a.dataset.view === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${VIEWS[name].title} · recd console`;
  main.replaceChildren();
  main.dataset.view = name;
  try {
    unmount = (await VIEWS[name].mount(main, params, { announce, fail })) || null;
  } catch (err) {
    fail(err);
  }
  // Screen readers land on the new view's heading, keyboards start from it.
  const heading = main.querySelector('h1');
  if (heading && focusOnRoute) {
    heading.setAttribute('tabindex', '-1');
    heading.focus();
  }
  focusOnRoute = true;
}
let focusOnRoute = false;

function keyDialog() {
  const dialog = document.getElementById('key-dialog');
  const input = document.getElementById('key-input');
  const form = document.getElementById('key-form');
  const open = () => {
    input.value = getKey();
    if (typeof dialog.showModal === 'function') dialog.showModal();
    else dialog.setAttribute('open', '');
    input.focus();
  };
  document.getElementById('key-button').addEventListener('click', open);
  form.addEventListener('submit', (e) => {
    const action = e.submitter ? e.submitter.value : 'save';
    if (action === 'save') setKey(input.value.trim());
    if (action === 'forget') setKey('');
    if (action !== 'cancel') {
      announce(action === 'save' ? 'Key saved for this tab.' : 'Key forgotten.', 'info');
      showKeyState();
      route();
    }
  });
  window.addEventListener('recd-auth', (e) => {
    announce(explain(e.detail));
    if (e.detail.status === 401 && !dialog.open) open();
  });
}

function showKeyState() {
  document.getElementById('key-button').textContent = getKey() ? 'API key ✓' : 'API key';
}

async function showServer() {
  const state = document.getElementById('server-state');
  try {
    const health = await api.get('/health');
    state.textContent = `${health.backend} · ${health.items} items · ${health.users} users · v${health.version}`;
  } catch (err) {
    state.textContent = 'server unreachable';
  }
}

keyDialog();
showKeyState();
showServer();
window.addEventListener('hashchange', route);
route();
