// A small line chart in inline SVG: a sliding window of points per series, y from zero
// to a rounded maximum, gaps where a value is unknown. No library, no canvas.

import { h, s, replace, num } from './dom.js';

const W = 320;
const H = 140;
const PAD = { left: 38, right: 6, top: 8, bottom: 18 };

/** The next "nice" number at or above x (1, 2, 2.5, 5 × 10^n). */
export function niceCeil(x) {
  if (!(x > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

export class Chart {
  /**
   * @param {object} o title, series labels, `format(value)` for labels, `points` kept,
   * `seconds` between points (for the time axis), `fixedMax` (e.g. 100 for a percentage).
   */
  constructor(o) {
    this.o = o;
    this.data = o.series.map(() => []);
    this.latest = h('span', { class: 'latest' });
    this.svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': o.title, preserveAspectRatio: 'none' });
    const legend = o.series.length > 1
      ? h('div', { class: 'legend', 'aria-hidden': 'true' }, o.series.map((label, i) => h('span', {}, h('i', { class: `s${i}` }), label)))
      : null;
    this.element = h('figure', { class: 'chart', dataset: { chart: o.id, latest: '', points: '0' } },
      h('figcaption', {}, h('span', {}, o.title), this.latest), this.svg, legend);
    this.render();
  }

  /** Adds one point per series (null: unknown) and redraws. */
  push(values) {
    const keep = this.o.points || 60;
    values.forEach((v, i) => {
      this.data[i].push(v === undefined || Number.isNaN(v) ? null : v);
      if (this.data[i].length > keep) this.data[i].shift();
    });
    this.render();
  }

  render() {
    const o = this.o;
    const keep = o.points || 60;
    const fmt = o.format || ((v) => num(v));
    const all = this.data.flat().filter((v) => v !== null);
    const max = o.fixedMax || niceCeil(Math.max(0, ...all));
    const x = (i, n) => PAD.left + ((W - PAD.left - PAD.right) * (keep - n + i)) / (keep - 1);
    const y = (v) => PAD.top + (H - PAD.top - PAD.bottom) * (1 - Math.min(v, max) / max);
    const parts = [];
    for (const frac of [0, 0.5, 1]) {
      const v = max * frac;
      parts.push(s('line', { class: 'grid', x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }));
      parts.push(s('text', { class: 'axis', x: PAD.left - 3, y: y(v) + 3, 'text-anchor': 'end' }, fmt(v)));
    }
    const span = Math.round(((keep - 1) * (o.seconds || 1)));
    parts.push(s('text', { class: 'axis', x: PAD.left, y: H - 4 }, `−${span} s`));
    parts.push(s('text', { class: 'axis', x: W - PAD.right, y: H - 4, 'text-anchor': 'end' }, 'now'));
    this.data.forEach((series, si) => {
      let run = [];
      const flush = () => {
        if (run.length) parts.push(s('polyline', { class: `s${si}`, points: run.join(' ') }));
        run = [];
      };
      series.forEach((v, i) => {
        if (v === null) flush();
        else run.push(`${x(i, series.length).toFixed(1)},${y(v).toFixed(1)}`);
      });
      if (run.length === 1) run.push(run[0]); // a lone point still shows
      flush();
    });
    replace(this.svg, parts);
    const last = this.data.map((series) => (series.length ? series[series.length - 1] : null));
    const text = last.map((v, i) => `${o.series.length > 1 ? `${o.series[i]} ` : ''}${v === null ? '—' : fmt(v)}`).join(' · ');
    this.latest.textContent = text;
    this.svg.setAttribute('aria-label', `${o.title}: ${text}`);
    this.element.dataset.latest = last[0] === null ? '' : String(last[0]);
    this.element.dataset.points = String(this.data[0].filter((v) => v !== null).length);
  }
}
