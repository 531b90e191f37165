// The one way the console talks to the server: same origin, JSON, the user's key as
// `Authorization: Bearer`, and every failure as an ApiError in the API's error shape.

const KEY = 'recd.console.key';

/** A failed call: HTTP status (0 when the server did not answer) and the API's error. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || [];
  }
}

/** The key of this tab, or ''. Session storage: it goes when the tab does. */
export function getKey() {
  try {
    return sessionStorage.getItem(KEY) || '';
  } catch {
    return '';
  }
}

export function setKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY, key);
    else sessionStorage.removeItem(KEY);
  } catch {
    // Storage disabled: the key lives as long as this page.
  }
  memoryKey = key || '';
}

let memoryKey = '';

function headers(json) {
  const out = { Accept: json ? 'application/json' : 'text/plain' };
  const key = getKey() || memoryKey;
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

async function send(method, path, body, json = true) {
  const init = { method, headers: headers(json), cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', `the server did not answer (${e.message})`);
  }
  const text = await response.text();
  if (!response.ok) {
    let error = {};
    try {
      error = JSON.parse(text).error || {};
    } catch {
      // Not the API's shape (a proxy's page): keep the status.
    }
    const failure = new ApiError(response.status, error.code || `http_${response.status}`,
      error.message || response.statusText || 'request failed', error.details);
    if (response.status === 401 || response.status === 403) {
      window.dispatchEvent(new CustomEvent('recd-auth', { detail: failure }));
    }
    throw failure;
  }
  if (!json) return text;
  return text ? JSON.parse(text) : null;
}

export const api = {
  get: (path) => send('GET', path),
  post: (path, body) => send('POST', path, body === undefined ? {} : body),
  put: (path, body) => send('PUT', path, body),
  del: (path) => send('DELETE', path),
  text: (path) => send('GET', path, undefined, false),
};

/** A path segment: ids may hold any character but controls. */
export const seg = (id) => encodeURIComponent(id);

/** What a person should read for a failure. */
export function explain(err) {
  if (!(err instanceof ApiError)) return `Something went wrong: ${err && err.message ? err.message : err}`;
  switch (err.status) {
    case 0: return `The server did not answer: ${err.message}. Is recd still running?`;
    case 401: return 'This server checks API keys and this request had none or an unknown one. Enter a key with the “API key” button.';
    case 403: return `Refused: ${err.message}. The playground needs a key with the read and write scopes; the operator views one with admin.`;
    case 429: return `Rate limited: ${err.message}. Try again in a moment.`;
    case 503: return `The server is unavailable: ${err.message}.`;
    default: {
      const details = err.details.map((d) => (d && d.message ? d.message : JSON.stringify(d))).join('; ');
      return `${err.message}${details ? ` (${details})` : ''}`;
    }
  }
}
