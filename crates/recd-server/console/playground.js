// The playground: a user, a search box and filters from the schema; the recommendation
// list with scores, reasons and the per-stage breakdown; events from buttons (click on
// open, dwell when the detail stays open, add to cart, purchase, dislike); after each
// event the list is fetched again and what moved is highlighted; the user's session
// state beside it; similar items of any item.

import { api, seg, ApiError } from './api.js';
import { h, replace, num, kv, when } from './dom.js';
import { filterForm, tagValues } from './filters.js';
import { moves, tally, mix } from './moves.js';

/** An open detail counts as a dwell once it stayed open this long (seconds). */
const DWELL_MIN_SECONDS = 3;
const USER_KEY = 'recd.console.user';

function newVisitor() {
  const bytes = new Uint8Array(4);
  crypto.getRandomValues(bytes);
  return `visitor-${[...bytes].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
}

function rememberedUser() {
  try { return sessionStorage.getItem(USER_KEY); } catch { return null; }
}

function rememberUser(id) {
  try { sessionStorage.setItem(USER_KEY, id); } catch { /* storage disabled */ }
}

export async function mount(main, params, ctx) {
  const schema = await api.get('/v1/schema');
  const fields = schema.fields;
  const textField = Object.keys(fields).find((f) => f === 'title') || Object.keys(fields).find((f) => fields[f] === 'text');
  const mixField = Object.keys(fields).find((f) => f === 'category') || Object.keys(fields).find((f) => fields[f] === 'tag');
  const titleOf = (item) => (textField && item && item[textField]) || (item && item.id) || '';

  let values = new Map();
  try {
    values = await tagValues(schema);
  } catch (err) {
    ctx.fail(err);
  }

  // State of the page.
  let user = params.get('user') || rememberedUser() || newVisitor();
  let answer = null;       // the last recommend answer
  let previous = [];       // ids of the list before the last refresh
  let version = 0;         // lists rendered (tests wait on it)
  let detail = null;       // {id, opened: ms, recommendationId} of the open item
  let chain = Promise.resolve();
  let refreshTimer = null;
  let alive = true;

  /** Runs `task` after the ones before it (events apply and lists refresh in order). */
  const run = (task) => {
    chain = chain.then(task).catch((err) => ctx.fail(err));
    return chain;
  };

  // ---- Controls -------------------------------------------------------------------
  const userInput = h('input', { id: 'pg-user', type: 'text', value: user, list: 'pg-users', autocomplete: 'off', spellcheck: 'false' });
  const userList = h('datalist', { id: 'pg-users' });
  const query = h('input', { id: 'pg-query', type: 'search', placeholder: 'e.g. trail running shoe', autocomplete: 'off' });
  const count = h('select', { id: 'pg-count' }, [10, 20, 50].map((n) => h('option', { value: String(n) }, String(n))));
  const explainBox = h('input', { id: 'pg-explain', type: 'checkbox', checked: true });
  const cacheBox = h('input', { id: 'pg-cache', type: 'checkbox', checked: true });
  const filters = filterForm(schema, values, () => {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => run(() => refresh('filters changed')), 250);
  });
  const firstTag = filters.element.querySelector('details');
  if (firstTag) firstTag.open = true;
  const requestView = h('pre', { id: 'pg-request' });

  const controls = h('form', { class: 'controls panel', 'aria-label': 'Recommendation request', onsubmit: (e) => { e.preventDefault(); applyUser(); run(() => refresh('request')); } },
    h('h1', {}, 'Playground'),
    h('div', { class: 'field' }, h('label', { for: 'pg-user' }, 'User'), userInput, userList),
    h('div', { class: 'row' },
      h('button', { type: 'button', id: 'pg-new-user', onclick: () => { userInput.value = newVisitor(); applyUser(); run(() => refresh('new user')); } }, 'New cold user'),
      h('button', { type: 'submit', class: 'primary', id: 'pg-go' }, 'Recommend')),
    h('div', { class: 'field' }, h('label', { for: 'pg-query' }, 'Search (text + vector retrieval)'), query),
    h('h2', {}, 'Filters'),
    filters.element,
    h('div', { class: 'row' },
      h('button', { type: 'button', onclick: () => { filters.clear(); run(() => refresh('filters cleared')); } }, 'Clear filters')),
    h('div', { class: 'row' },
      h('label', { for: 'pg-count' }, 'Items'), count,
      h('label', {}, explainBox, ' explain stages'),
      h('label', {}, cacheBox, ' use cache')),
    h('details', {}, h('summary', {}, 'Request sent'), requestView));

  // ---- The list ---------------------------------------------------------------------
  const summary = h('p', { class: 'summary', id: 'pg-summary', 'aria-live': 'polite' });
  const mixBar = h('div', { class: 'mix', 'aria-hidden': 'true' });
  const mixText = h('p', { class: 'muted', id: 'pg-mix' });
  const list = h('ol', { class: 'cards', id: 'pg-list', 'aria-label': 'Recommended items', dataset: { version: '0' } });
  const gone = h('div', { class: 'removed', id: 'pg-gone' });
  const listPanel = h('section', { 'aria-labelledby': 'pg-list-title' },
    h('h2', { id: 'pg-list-title' }, 'Recommendations'), summary, mixBar, mixText, list, gone);

  // ---- Side panels -----------------------------------------------------------------
  const detailPanel = h('section', { class: 'panel', id: 'pg-detail', 'aria-labelledby': 'pg-detail-title', tabindex: '-1', hidden: true });
  const sessionPanel = h('section', { class: 'panel', id: 'pg-session', 'aria-labelledby': 'pg-session-title' });
  const explainPanel = h('section', { class: 'panel', id: 'pg-explain-panel', 'aria-labelledby': 'pg-explain-title' });
  const side = h('div', { class: 'side-panels' }, detailPanel, sessionPanel, explainPanel);

  replace(main, h('div', { class: 'pg' }, controls, listPanel, side));

  function applyUser() {
    const id = userInput.value.trim();
    if (id && id !== user) {
      flushDwell();
      user = id;
      previous = [];
      answer = null;
      closeDetail(false);
    }
    rememberUser(user);
  }

  // ---- Requests -------------------------------------------------------------------
  function body() {
    const b = { user_id: user, count: Number(count.value), explain: explainBox.checked };
    const filter = filters.read();
    if (filter) b.filter = filter;
    if (query.value.trim()) b.query = query.value.trim();
    if (!cacheBox.checked) b.use_cache = false;
    return b;
  }

  async function refresh(why) {
    if (!alive) return;
    const request = body();
    requestView.textContent = JSON.stringify(request, null, 2);
    const next = await api.post('/v1/recommend', request);
    previous = answer ? answer.items.map((i) => i.id) : [];
    const moved = moves(previous, next.items.map((i) => i.id));
    answer = next;
    renderList(moved, why);
    renderExplain();
    await renderSession();
  }

  async function sendEvent(type, itemId, extra = {}) {
    const event = { user_id: user, item_id: itemId, type, ...extra };
    const recId = extra.recommendation_id || (answer && answer.items.some((i) => i.id === itemId) ? answer.recommendation_id : undefined);
    if (recId) event.recommendation_id = recId;
    await api.post('/v1/events', { events: [event] });
  }

  /** An event from a button, then the list again. */
  const act = (type, served, label) => run(async () => {
    await sendEvent(type, served.id);
    if (type === 'purchase' && detail && detail.id === served.id) closeDetail(true);
    await refresh(`${label} “${titleOf(served.item)}”`);
  });

  // ---- Rendering ------------------------------------------------------------------
  function fieldChips(item) {
    const parts = [];
    for (const [f, t] of Object.entries(fields)) {
      if (f === textField || item[f] === undefined || item[f] === null) continue;
      if (t === 'tag') {
        for (const v of Array.isArray(item[f]) ? item[f] : [item[f]]) parts.push(h('span', { class: 'chip', dataset: { field: f }, title: f }, v));
      } else if (t === 'numeric') {
        parts.push(h('span', { class: 'chip', dataset: { field: f } }, `${f} ${num(item[f])}`));
      } else if (t === 'bool') {
        parts.push(h('span', { class: 'chip', dataset: { field: f } }, item[f] ? f.replace(/_/g, ' ') : `not ${f.replace(/_/g, ' ')}`));
      }
    }
    return parts;
  }

  function badge(m) {
    if (!m || m.kind === 'same' || !previous.length) return null;
    if (m.kind === 'new') return h('span', { class: 'badge new' }, 'new', h('span', { class: 'visually-hidden' }, ' in the list'));
    const arrow = m.kind === 'up' ? '▲' : '▼';
    return h('span', { class: `badge ${m.kind}` }, h('span', { 'aria-hidden': 'true' }, `${arrow} ${m.by}`),
      h('span', { class: 'visually-hidden' }, `moved ${m.kind} ${m.by} from ${m.from}`));
  }

  function card(served, i, m) {
    const item = served.item || {};
    const title = titleOf({ ...item, id: served.id });
    const kind = previous.length && m && m.kind !== 'same' ? m.kind : '';
    return h('li', { class: `card ${kind}`, dataset: { id: served.id, move: kind || 'same' } },
      h('span', { class: 'rank', 'aria-hidden': 'true' }, String(i + 1)),
      h('div', {},
        h('button', { type: 'button', class: 'title', 'aria-label': `Open ${title} (sends a click)`, onclick: () => openItem(served, true) }, title),
        h('div', { class: 'meta' }, h('code', {}, served.id), ' ', fieldChips(item)),
        served.reasons && served.reasons.length
          ? h('ul', { class: 'reasons', 'aria-label': 'Why' }, served.reasons.map((r) => h('li', {}, r))) : null),
      h('div', { class: 'side' }, h('div', {}, 'score ', h('b', { class: 'score' }, num(served.score, 4))), badge(m)),
      h('div', { class: 'actions' },
        h('button', { type: 'button', 'aria-label': `Add ${title} to cart`, dataset: { act: 'add_to_cart' }, onclick: () => act('add_to_cart', served, 'adding to the cart') }, 'Add to cart'),
        h('button', { type: 'button', 'aria-label': `Purchase ${title}`, dataset: { act: 'purchase' }, onclick: () => act('purchase', served, 'a purchase of') }, 'Purchase'),
        h('button', { type: 'button', 'aria-label': `Dislike ${title}`, dataset: { act: 'dislike' }, onclick: () => act('dislike', served, 'a dislike of') }, 'Dislike'),
        h('button', { type: 'button', 'aria-label': `Items similar to ${title}`, dataset: { act: 'similar' }, onclick: () => openItem(served, false) }, 'Similar')));
  }

  function renderList(moved, why) {
    const items = answer.items;
    replace(list, items.map((served, i) => card(served, i, moved.placed.get(served.id))));
    version += 1;
    list.dataset.version = String(version);
    list.dataset.source = answer.source;
    const t = tally(moved);
    const who = `${answer.source === 'popular' ? 'Popular items (no usable history yet)' : 'Personalized'} for ${user}`;
    if (!previous.length) {
      summary.textContent = `${who}: ${items.length} items.`;
    } else {
      const changes = [`${t.new} new`, `${t.up} up`, `${t.down} down`, `${t.gone} left`].join(', ');
      const risers = items.filter((s) => ['new', 'up'].includes((moved.placed.get(s.id) || {}).kind));
      const reasons = [...new Set(risers.flatMap((s) => s.reasons || []))].slice(0, 2);
      summary.textContent = `${why ? `After ${why}: ` : ''}${changes}. ${who}.${reasons.length ? ` Why the risers rose: ${reasons.join('; ')}.` : ''}`;
    }
    const shares = mixField ? mix(items, mixField) : [];
    replace(mixBar, shares.slice(0, 8).map(([v, n], k) => {
      const span = h('span', { title: `${v}: ${n}` });
      span.style.flex = String(n);
      span.style.background = `hsl(${(k * 67) % 360} 60% 55%)`;
      return span;
    }));
    mixText.textContent = shares.length
      ? `${mixField} mix: ${shares.slice(0, 5).map(([v, n]) => `${v} ${n}/${items.length}`).join(', ')}${shares.length > 5 ? ', …' : ''}`
      : '';
    replace(gone, moved.gone.length && previous.length
      ? [h('h3', {}, 'Left the list'), h('ul', { class: 'ids' }, moved.gone.map((id) => h('li', {}, h('code', {}, id))))]
      : []);
  }

  function renderExplain() {
    const a = answer;
    const pairs = [
      ['source', a.source],
      ['strategy', a.strategy || 'default'],
      ['cache', a.cache ? `${a.cache.tier}, ${a.cache.age_ms} ms old` : 'computed'],
      ['took', `${num(a.took_ms)} ms`],
      ['list id', h('code', {}, a.recommendation_id)],
    ];
    if (a.experiment) pairs.push(['experiment', `${a.experiment} / ${a.variant || '—'}`]);
    const stages = a.stages;
    const parts = [h('h2', { id: 'pg-explain-title' }, 'How this list was built'), kv(pairs)];
    if (stages) {
      for (const [name, value] of Object.entries(stages)) {
        parts.push(h('h3', {}, name.replace(/_/g, ' ')));
        if (value && typeof value === 'object' && !Array.isArray(value)) {
          parts.push(kv(Object.entries(value).map(([k, v]) => [k.replace(/_/g, ' '), typeof v === 'number' ? num(v, 3) : Array.isArray(v) ? v.join(', ') || '—' : v === null ? '—' : String(v)])));
        } else {
          parts.push(h('p', {}, JSON.stringify(value)));
        }
      }
    } else {
      parts.push(h('p', { class: 'muted' }, 'Tick “explain stages” for candidates and timings per stage.'));
    }
    replace(explainPanel, parts);
  }

  async function renderSession() {
    const title = h('h2', { id: 'pg-session-title' }, 'Session of ', h('code', {}, user));
    let state;
    try {
      state = await api.get(`/v1/users/${seg(user)}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        replace(sessionPanel, title, h('p', { class: 'muted' }, 'No state yet: a cold user gets the popular list. Open an item to start a session.'));
        return;
      }
      throw err;
    }
    const c = state.counters || {};
    const counters = Object.entries(c).filter(([k]) => k !== 'dwell_seconds').map(([k, v]) => [k.replace(/_/g, ' '), String(v)]);
    counters.push(['dwell seconds', num(c.dwell_seconds || 0, 1)]);
    replace(sessionPanel, title,
      kv([
        ['session vector norm', num(state.session_vector_norm, 4)],
        ['long-term vector', state.has_long_term_vector ? 'yes' : 'no'],
        ['excluded items', String(state.excluded_items ?? '—')],
        ['last event', when(state.last_event_ms)],
      ]),
      h('h3', {}, 'Counters'), kv(counters),
      h('h3', {}, `Recent items (${(state.recent_items || []).length})`),
      h('ol', { class: 'ids', id: 'pg-recent' }, (state.recent_items || []).map((id) => h('li', {}, h('code', {}, id)))),
      h('h3', {}, `Purchased (${(state.purchased || []).length})`),
      h('ul', { class: 'ids', id: 'pg-purchased' }, (state.purchased || []).map((id) => h('li', {}, h('code', {}, id)))));
  }

  // ---- Detail and similar -----------------------------------------------------------
  function flushDwell() {
    if (!detail || !detail.counted) return null;
    const seconds = (performance.now() - detail.opened) / 1000;
    const d = detail;
    detail = { ...detail, counted: false };
    if (seconds < DWELL_MIN_SECONDS) return null;
    const value = Math.round(seconds * 10) / 10;
    return sendEvent('dwell', d.id, { value, recommendation_id: d.recommendationId }).then(() => value);
  }

  function closeDetail(andDwell) {
    const pending = andDwell ? flushDwell() : null;
    detail = null;
    detailPanel.hidden = true;
    replace(detailPanel);
    return pending;
  }

  /** Shows an item and its similar items; `asClick` sends a click (and later a dwell). */
  function openItem(served, asClick, fromList = answer) {
    run(async () => {
      const pending = flushDwell();
      const title = titleOf({ ...(served.item || {}), id: served.id });
      const recId = fromList && fromList.items.some((i) => i.id === served.id) ? fromList.recommendation_id : undefined;
      detail = { id: served.id, opened: performance.now(), recommendationId: recId, counted: asClick };
      const similarList = h('ol', { class: 'ids', id: 'pg-similar' }, h('li', { class: 'muted' }, 'Loading…'));
      const close = h('button', { type: 'button', id: 'pg-detail-close', onclick: () => run(async () => {
        const dwell = closeDetail(true);
        const seconds = dwell ? await dwell : null;
        if (seconds !== null) await refresh(`${seconds} s on “${title}”`);
      }) }, 'Close');
      replace(detailPanel,
        h('h2', { id: 'pg-detail-title' }, title),
        h('p', { class: 'muted' }, asClick ? `Click sent. Keep it open ${DWELL_MIN_SECONDS} s or more and closing it sends a dwell with the seconds.` : 'Similar items (no event sent).'),
        h('div', { class: 'meta' }, h('code', {}, served.id), ' ', fieldChips(served.item || {})),
        h('div', { class: 'row' },
          h('button', { type: 'button', onclick: () => act('add_to_cart', served, 'adding to the cart') }, 'Add to cart'),
          h('button', { type: 'button', onclick: () => act('purchase', served, 'a purchase of') }, 'Purchase'),
          h('button', { type: 'button', onclick: () => act('dislike', served, 'a dislike of') }, 'Dislike'),
          close),
        h('h3', {}, 'Similar items'), similarList);
      detailPanel.hidden = false;
      detailPanel.focus();
      const seconds = pending ? await pending : null;
      if (asClick) await sendEvent('click', served.id, recId ? { recommendation_id: recId } : {});
      const similar = await api.post(`/v1/items/${seg(served.id)}/similar`, { count: 8 });
      replace(similarList, similar.items.length ? similar.items.map((s) => h('li', {},
        h('button', { type: 'button', class: 'title', onclick: () => openItem(s, true, similar) }, titleOf({ ...(s.item || {}), id: s.id })),
        ' ', h('span', { class: 'count' }, `score ${num(s.score, 3)}`))) : h('li', { class: 'muted' }, 'None (the item has no vector yet).'));
      if (asClick || seconds !== null) await refresh(asClick ? `a click on “${title}”` : `${seconds} s on an item`);
    });
  }

  const onHide = () => { if (document.visibilityState === 'hidden') run(() => flushDwell()); };
  document.addEventListener('visibilitychange', onHide);

  // Users to pick from (the first page of the listing).
  api.get('/v1/users?limit=100').then((page) => {
    replace(userList, page.users.map((id) => h('option', { value: id })));
  }).catch(() => { /* the list is a convenience */ });

  rememberUser(user);
  await run(() => refresh(''));
  // Time to interactive, as the browser test measures it: from navigation to a usable list.
  if (!performance.getEntriesByName('recd-console-ready').length) performance.mark('recd-console-ready');

  return () => {
    alive = false;
    clearTimeout(refreshTimer);
    document.removeEventListener('visibilitychange', onHide);
    const pending = flushDwell();
    if (pending) pending.catch(() => {});
  };
}
