// Filters generated from the schema (GET /v1/schema): tag fields as checkboxes of the
// values seen in the catalog, numeric fields as min/max, bools as yes/no/any, text fields
// as "contains the words". `read()` gives API.md's Filter object.

import { api } from './api.js';
import { h } from './dom.js';

/** Items read to learn each tag field's values (two pages of the listing at most). */
const SAMPLE_PAGES = 2;

/** The values of each tag field in the first pages of the catalog, most frequent first. */
export async function tagValues(schema) {
  const tags = Object.entries(schema.fields).filter(([, t]) => t === 'tag').map(([f]) => f);
  const counts = new Map(tags.map((f) => [f, new Map()]));
  let cursor = null;
  for (let page = 0; page < SAMPLE_PAGES && tags.length; page += 1) {
    const q = new URLSearchParams({ limit: '1000' });
    if (cursor) q.set('cursor', cursor);
    const answer = await api.get(`/v1/items?${q}`);
    for (const item of answer.items) {
      for (const f of tags) {
        const v = item[f];
        for (const x of Array.isArray(v) ? v : v === undefined || v === null ? [] : [v]) {
          counts.get(f).set(String(x), (counts.get(f).get(String(x)) || 0) + 1);
        }
      }
    }
    cursor = answer.next_cursor;
    if (!cursor) break;
  }
  const out = new Map();
  for (const [f, c] of counts) out.set(f, [...c.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])));
  return out;
}

let serial = 0;
const uid = (what) => `f-${what}-${(serial += 1)}`;

function tagField(field, values, onChange) {
  const mode = h('select', { 'aria-label': `${field}: match`, onchange: onChange },
    h('option', { value: 'any' }, 'any of'), h('option', { value: 'none' }, 'none of'));
  const summaryCount = h('span', { class: 'count' });
  const boxes = values.map(([value, count]) => {
    const box = h('input', { type: 'checkbox', value, dataset: { field } });
    const label = h('label', {}, box, value, h('span', { class: 'count' }, `(${count})`));
    return { value, box, label };
  });
  const list = h('div', { class: 'tag-values', role: 'group', 'aria-label': `${field} values` }, boxes.map((b) => b.label));
  const update = () => {
    const n = boxes.filter((b) => b.box.checked).length;
    summaryCount.textContent = n ? ` · ${n} selected` : '';
  };
  list.addEventListener('change', () => { update(); onChange(); });
  const find = h('input', {
    type: 'search', placeholder: `Find a ${field}`, 'aria-label': `Find a ${field} value`,
    oninput: () => {
      const needle = find.value.toLowerCase();
      for (const b of boxes) b.label.hidden = needle !== '' && !b.value.toLowerCase().includes(needle);
    },
  });
  const element = h('details', { dataset: { filter: field } },
    h('summary', {}, field, summaryCount),
    h('div', { class: 'row' }, mode, find),
    values.length ? list : h('p', { class: 'muted' }, 'No values seen in the catalog.'));
  return {
    element,
    read: () => {
      const picked = boxes.filter((b) => b.box.checked).map((b) => b.value);
      return picked.length ? { [mode.value]: picked } : undefined;
    },
    clear: () => { for (const b of boxes) b.box.checked = false; update(); },
  };
}

function numericField(field, onChange) {
  const min = h('input', { type: 'number', step: 'any', id: uid(`${field}-min`), onchange: onChange });
  const max = h('input', { type: 'number', step: 'any', id: uid(`${field}-max`), onchange: onChange });
  const element = h('fieldset', { dataset: { filter: field } }, h('legend', {}, field),
    h('div', { class: 'row' },
      h('span', { class: 'field' }, h('label', { for: min.id }, 'at least'), min),
      h('span', { class: 'field' }, h('label', { for: max.id }, 'at most'), max)));
  return {
    element,
    read: () => {
      const out = {};
      if (min.value !== '') out.gte = Number(min.value);
      if (max.value !== '') out.lte = Number(max.value);
      return Object.keys(out).length ? out : undefined;
    },
    clear: () => { min.value = ''; max.value = ''; },
  };
}

function boolField(field, onChange) {
  const select = h('select', { id: uid(field), onchange: onChange },
    h('option', { value: '' }, 'any'), h('option', { value: 'true' }, 'yes'), h('option', { value: 'false' }, 'no'));
  const element = h('div', { class: 'row', dataset: { filter: field } }, h('label', { for: select.id }, field), select);
  return {
    element,
    read: () => (select.value === '' ? undefined : select.value === 'true'),
    clear: () => { select.value = ''; },
  };
}

function textField(field, onChange) {
  const input = h('input', { type: 'text', id: uid(field), placeholder: 'every word present', onchange: onChange });
  const element = h('div', { class: 'field', dataset: { filter: field } }, h('label', { for: input.id }, `${field} contains`), input);
  return {
    element,
    read: () => (input.value.trim() ? { match: input.value.trim() } : undefined),
    clear: () => { input.value = ''; },
  };
}

/** The filter form of `schema`; `values` from tagValues; `onChange` after any edit. */
export function filterForm(schema, values, onChange) {
  const fields = Object.entries(schema.fields).map(([field, type]) => {
    switch (type) {
      case 'tag': return [field, tagField(field, values.get(field) || [], onChange)];
      case 'numeric': return [field, numericField(field, onChange)];
      case 'bool': return [field, boolField(field, onChange)];
      case 'text': return [field, textField(field, onChange)];
      default: return null;
    }
  }).filter(Boolean);
  // Tags first (the usual filters; the one with the fewest values, the broadest, leads),
  // then ranges, bools and words.
  const order = { tag: 0, numeric: 1, bool: 2, text: 3 };
  const spread = (f) => (values.get(f) || []).length;
  fields.sort((a, b) => order[schema.fields[a[0]]] - order[schema.fields[b[0]]] || spread(a[0]) - spread(b[0]));
  const element = h('div', { class: 'filters' }, fields.map(([, f]) => f.element));
  return {
    element,
    /** API.md's Filter, or undefined when nothing is set. */
    read: () => {
      const filter = {};
      for (const [field, f] of fields) {
        const v = f.read();
        if (v !== undefined) filter[field] = v;
      }
      return Object.keys(filter).length ? filter : undefined;
    },
    clear: () => { for (const [, f] of fields) f.clear(); },
  };
}
