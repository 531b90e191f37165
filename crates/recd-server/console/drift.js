// Drift (admin): per watched feature, the reference and live summaries, PSI, the test's
// p-value, the threshold and the verdict; and the reset of the references.

import { api } from './api.js';
import { h, replace, num, table } from './dom.js';

function summary(x) {
  if (!x || typeof x !== 'object') return '—';
  const parts = [];
  for (const [k, v] of Object.entries(x)) {
    if (typeof v === 'number') parts.push(`${k} ${num(v, 3)}`);
    else if (v && typeof v === 'object') {
      const top = Object.entries(v).sort((a, b) => b[1] - a[1]).slice(0, 3);
      parts.push(`${k}: ${top.map(([c, share]) => `${c} ${num(100 * share, 1)} %`).join(', ')}${Object.keys(v).length > 3 ? ', …' : ''}`);
    }
  }
  return parts.join(' · ');
}

export async function mount(main, _params, ctx) {
  const holder = h('div', { id: 'drift-table' });
  const reset = h('button', { type: 'button', class: 'danger', onclick: async () => {
    if (!window.confirm('Pin new references from the next observations on (e.g. after a retrain)?')) return;
    try {
      await api.post('/v1/monitoring/drift/reset');
      ctx.announce('References reset: the next observations become the reference.', 'info');
      await show();
    } catch (err) {
      ctx.fail(err);
    }
  } }, 'Reset references');
  const refresh = h('button', { type: 'button', onclick: () => show().catch(ctx.fail) }, 'Refresh');
  replace(main, h('h1', {}, 'Drift'),
    h('p', { class: 'muted' }, 'The served population compared with its reference window (admin key). A feature drifts when its PSI is over the threshold and the two-sample test is significant.'),
    h('div', { class: 'row' }, refresh, reset), holder);

  async function show() {
    const d = await api.get('/v1/monitoring/drift');
    const head = h('p', { id: 'drift-verdict', class: d.drifted.length ? 'alarm' : 'yes' },
      d.drifted.length ? `Drifted: ${d.drifted.join(', ')}` : 'No feature drifted.',
      h('span', { class: 'muted' }, ` (PSI threshold ${num(d.threshold, 3)}, α ${num(d.alpha, 3)})`));
    replace(holder, head, table(
      [{ label: 'feature' }, { label: 'status' }, { label: 'reference' }, { label: 'live' }, { label: 'PSI', num: true },
        { label: 'test' }, { label: 'p-value', num: true }, { label: 'drifted' }],
      d.features.map((f) => {
        const r = f.report;
        return { cells: [f.name, f.status, r ? summary(r.reference) : '—', r ? summary(r.live) : '—', r ? num(r.psi, 4) : '—',
          r ? `${r.test} (${num(r.statistic, 3)})` : '—', r ? num(r.p_value, 4) : '—',
          r ? h('span', { class: r.drifted ? 'alarm' : 'no' }, r.drifted ? 'yes' : 'no') : '—'] };
      }), { caption: 'Drift per feature' }));
  }
  await show();
}
