// Experiments (admin): every experiment with its status; one experiment's variants with
// their rates, intervals, p-values and the sample-size and SRM checks.

import { api, seg } from './api.js';
import { h, s, replace, num, table, kv, when } from './dom.js';

const pct = (v) => (v === null || v === undefined ? '—' : `${num(100 * v, 2)} %`);

/** A rate with its interval as text and as a small bar (0 to `max`). */
function rate(r, max) {
  if (!r) return '—';
  const x = (v) => 4 + 112 * Math.min(1, max > 0 ? v / max : 0);
  const bar = s('svg', { class: 'interval', viewBox: '0 0 120 16', 'aria-hidden': 'true' },
    s('line', { x1: x(r.low), x2: x(r.high), y1: 8, y2: 8 }), s('circle', { cx: x(r.value), cy: 8, r: 3 }));
  return h('span', {}, `${pct(r.value)} [${pct(r.low)}, ${pct(r.high)}] `, bar);
}

function pValue(p) {
  if (p === null || p === undefined) return '—';
  return h('span', { class: p < 0.05 ? 'yes' : 'no' }, `${num(p, 4)}${p < 0.05 ? ' (significant at 5 %)' : ''}`);
}

export async function mount(main, params, ctx) {
  const listHolder = h('div', { id: 'exp-list' });
  const detail = h('section', { id: 'exp-detail', 'aria-live': 'polite' });
  replace(main, h('h1', {}, 'Experiments'),
    h('p', { class: 'muted' }, 'A/B tests, bandits and interleaving between ranking strategies (admin key).'),
    listHolder, detail);

  async function showList() {
    const answer = await api.get('/v1/experiments');
    const exps = answer.experiments || [];
    replace(listHolder, exps.length
      ? table([{ label: 'id' }, { label: 'kind' }, { label: 'status' }, { label: 'metric' }, { label: 'variants' }, { label: 'started' }],
        exps.map((e) => ({ cells: [
          h('a', { href: `#/experiments?id=${encodeURIComponent(e.id)}` }, e.id), e.kind, e.status, e.metric || '—',
          (e.variants || []).map((v) => `${v.name} → ${v.strategy} (${num(v.weight, 2)})`).join(', '), when(e.started_at)] })),
        { caption: 'Experiments' })
      : h('p', { class: 'muted' }, 'No experiments yet. Create one with POST /v1/experiments (see the README).'));
  }

  async function showOne(id) {
    const r = await api.get(`/v1/experiments/${seg(id)}`);
    const variants = r.variants || [];
    const maxRate = Math.max(0, ...variants.flatMap((v) => [v.ctr && v.ctr.high, v.conversion_rate && v.conversion_rate.high].filter((x) => x !== undefined)));
    const stop = h('button', { type: 'button', class: 'danger', disabled: r.status !== 'running', onclick: async () => {
      if (!window.confirm(`Stop experiment ${id}? Assignment stops; its results stay.`)) return;
      try {
        await api.post(`/v1/experiments/${seg(id)}/stop`);
        ctx.announce(`Experiment ${id} stopped.`, 'info');
        await Promise.all([showList(), showOne(id)]);
      } catch (err) {
        ctx.fail(err);
      }
    } }, 'Stop');
    const facts = [['kind', r.kind], ['status', r.status], ['started', when(r.started_at)]];
    if (r.srm) facts.push(['sample ratio mismatch', h('span', { class: r.srm.mismatch ? 'alarm' : 'no' }, `${r.srm.mismatch ? 'yes' : 'no'} (p = ${num(r.srm.p_value, 4)})`)]);
    if (r.sample_size) facts.push(['sample size', `${num(r.sample_size.required_per_variant, 0)} per variant for an MDE of ${pct(r.sample_size.mde)}: ${r.sample_size.reached ? 'reached' : 'not reached yet'}`]);
    if (r.interleaving) facts.push(['interleaving', `preference ${num(r.interleaving.preference, 3)}, p = ${num(r.interleaving.p_value, 4)}`]);
    replace(detail, h('h2', {}, `Experiment ${id}`), kv(facts), h('div', { class: 'row' }, stop),
      table([{ label: 'variant' }, { label: 'users', num: true }, { label: 'impressions', num: true }, { label: 'clicks', num: true },
        { label: 'conversions', num: true }, { label: 'CTR [95 % CI]' }, { label: 'conversion rate' }, { label: 'p-value' },
        { label: 'always-valid p' }, { label: 'P(beats control)', num: true }, { label: 'expected loss', num: true }, { label: 'traffic', num: true }],
      variants.map((v) => ({ cells: [v.name, num(v.users, 0), num(v.impressions, 0), num(v.clicks, 0), num(v.conversions, 0),
        rate(v.ctr, maxRate), rate(v.conversion_rate, maxRate), pValue(v.p_value), pValue(v.always_valid_p_value),
        v.prob_beat_control === undefined ? '—' : pct(v.prob_beat_control), v.expected_loss === undefined ? '—' : num(v.expected_loss, 5),
        pct(v.traffic_share)] })), { caption: `Variants of ${id}` }));
  }

  await showList();
  const id = params.get('id');
  if (id) await showOne(id);
}
