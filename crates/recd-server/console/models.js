// Model versions (admin): what `recd train` recorded, with settings and gate metrics, and
// activation of any kept version (a rollback is activating an older one).

import { api, seg } from './api.js';
import { h, replace, num, table, when } from './dom.js';

function flat(x) {
  if (x === null || x === undefined) return '—';
  if (typeof x !== 'object') return typeof x === 'number' ? num(x, 4) : String(x);
  return Object.entries(x).map(([k, v]) => `${k} ${v && typeof v === 'object' ? `{${flat(v)}}` : flat(v)}`).join(', ');
}

export async function mount(main, _params, ctx) {
  const holder = h('div', { id: 'models-table' });
  replace(main, h('h1', {}, 'Models'),
    h('p', { class: 'muted' }, 'Versions recorded by recd train, oldest first (admin key). Activating a version writes its vectors into the serving state; activating an older one is a rollback.'),
    holder);

  async function activate(version) {
    if (!window.confirm(`Make ${version} the live model? Its vectors replace the serving ones and every cached list is dropped.`)) return;
    try {
      const r = await api.post(`/v1/models/${seg(version)}/activate`);
      ctx.announce(r && r.already_live ? `${version} was already live.` : `${version} is live.`, 'info');
      await show();
    } catch (err) {
      ctx.fail(err);
    }
  }

  async function show() {
    const m = await api.get('/v1/models');
    const models = m.models || [];
    replace(holder,
      h('p', {}, `Live: ${m.live || 'none (vectors from the demo or an import)'} · gate margin ${num(m.gate_margin, 4)} · keeping ${m.keep_versions} versions`),
      models.length ? table([{ label: 'version' }, { label: 'created' }, { label: 'status' }, { label: 'settings' }, { label: 'gate' }, { label: 'counts' }, { label: '' }],
        models.map((v) => ({ class: v.live ? 'live' : null, cells: [v.version + (v.live ? ' (live)' : ''), when(v.created_at), v.status,
          flat(v.settings), flat(v.gate), flat(v.counts),
          v.live ? '' : h('button', { type: 'button', onclick: () => activate(v.version), 'aria-label': `Activate ${v.version}` }, 'Activate')] })),
        { caption: 'Model versions' })
        : h('p', { class: 'muted' }, 'No versions yet: run recd train.'));
  }
  await show();
}
