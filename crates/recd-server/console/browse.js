// The items and users browsers: pages of the listing endpoints (GET /v1/items and
// GET /v1/users), forward by the server's cursor and back by the cursors already seen.

import { api, seg, explain } from './api.js';
import { h, replace, num, table } from './dom.js';

/** A pager over `load(cursor, limit) → {rows, next}`; renders into `into`. */
function pager(into, load, render, ctx) {
  const stack = [null]; // cursor of each page seen so far; the last is the current page
  let next = null;
  const limit = h('select', { id: `pg-limit-${into.id}`, onchange: () => { stack.length = 1; show(); } },
    [20, 50, 100, 500].map((n) => h('option', { value: String(n), selected: n === 50 }, String(n))));
  const prev = h('button', { type: 'button', dataset: { page: 'previous' }, onclick: () => { if (stack.length > 1) { stack.pop(); show(); } } }, '← Previous');
  const more = h('button', { type: 'button', dataset: { page: 'next' }, onclick: () => { if (next) { stack.push(next); show(); } } }, 'Next →');
  const where = h('span', { class: 'muted', 'aria-live': 'polite', dataset: { page: 'where' } });
  const body = h('div', {});
  replace(into, h('div', { class: 'row' }, prev, more, where, h('label', { for: limit.id }, 'per page'), limit), body);

  async function show() {
    prev.disabled = true;
    more.disabled = true;
    try {
      const page = await load(stack[stack.length - 1], Number(limit.value));
      next = page.next;
      render(body, page.rows);
      where.textContent = `page ${stack.length}, ${page.rows.length} shown${next ? '' : ' (last page)'}`;
    } catch (err) {
      ctx.fail(err);
      replace(body, h('p', { class: 'muted' }, explain(err)));
    }
    prev.disabled = stack.length <= 1;
    more.disabled = !next;
  }
  return { show, reset: () => { stack.length = 1; return show(); } };
}

export async function mountItems(main, _params, ctx) {
  const schema = await api.get('/v1/schema');
  const fields = Object.keys(schema.fields);
  const filter = h('textarea', { id: 'items-filter', rows: 2, cols: 40, placeholder: '{"category": {"any": ["shoes"]}}', spellcheck: 'false' });
  const detail = h('section', { class: 'panel', id: 'items-detail', hidden: true, 'aria-live': 'polite' });
  const holder = h('div', { id: 'items-pages' });
  let filterText = '';
  replace(main,
    h('h1', {}, 'Items'),
    h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); filterText = filter.value.trim(); pages.reset(); } },
      h('label', { for: 'items-filter' }, 'Filter (API.md Filter JSON, optional)'), filter, h('button', { type: 'submit' }, 'Apply')),
    detail, holder);

  async function open(id) {
    try {
      const item = await api.get(`/v1/items/${seg(id)}`);
      replace(detail, h('h2', {}, id), h('pre', {}, JSON.stringify(item, null, 2)),
        h('button', { type: 'button', onclick: () => { detail.hidden = true; } }, 'Close'));
      detail.hidden = false;
    } catch (err) {
      ctx.fail(err);
    }
  }

  const pages = pager(holder, async (cursor, limit) => {
    const q = new URLSearchParams({ limit: String(limit) });
    if (cursor) q.set('cursor', cursor);
    if (filterText) q.set('filter', filterText);
    const page = await api.get(`/v1/items?${q}`);
    return { rows: page.items, next: page.next_cursor };
  }, (body, rows) => {
    const cell = (v) => (Array.isArray(v) ? v.join(', ') : typeof v === 'number' ? num(v) : v === undefined || v === null ? '—' : String(v));
    replace(body, table([{ label: 'id' }, ...fields.map((f) => ({ label: f, num: schema.fields[f] === 'numeric' }))],
      rows.map((item) => ({ cells: [h('button', { type: 'button', class: 'title', onclick: () => open(item.id) }, item.id), ...fields.map((f) => cell(item[f]))] })),
      { caption: 'Items' }));
  }, ctx);
  await pages.show();
}

export async function mountUsers(main, _params, ctx) {
  const holder = h('div', { id: 'users-pages' });
  replace(main, h('h1', {}, 'Users'),
    h('p', { class: 'muted' }, 'Every user the server holds state for. Open one in the playground to see its list and session.'),
    holder);
  const pages = pager(holder, async (cursor, limit) => {
    const q = new URLSearchParams({ limit: String(limit) });
    if (cursor) q.set('cursor', cursor);
    const page = await api.get(`/v1/users?${q}`);
    return { rows: page.users, next: page.next_cursor };
  }, (body, rows) => {
    replace(body, table([{ label: 'user' }, { label: '' }],
      rows.map((id) => ({ cells: [h('code', {}, id), h('a', { href: `#/playground?user=${encodeURIComponent(id)}` }, 'Open in the playground')] })),
      { caption: 'Users' }));
  }, ctx);
  await pages.show();
}
