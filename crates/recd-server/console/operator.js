// The operator's live view: throughput, latency, cache hit ratio and event rate, computed
// in the browser from successive scrapes of this server's own /metrics (Prometheus text).
// Only API routes (/v1/*) count as traffic: the scrapes and the console's files do not.
// Scraping happens only while this view is open and the tab is visible.

import { api, explain } from './api.js';
import { h, replace, num, table } from './dom.js';
import { Chart } from './chart.js';
import * as prom from './prom.js';

const apiRoute = (l) => typeof l.path === 'string' && l.path.startsWith('/v1/');

/** What one scrape says, reduced to the counters the charts need. */
export function reading(samples, at) {
  const perRoute = new Map();
  for (const s of samples) {
    if (!apiRoute(s.labels)) continue;
    const key = `${s.labels.method} ${s.labels.path}`;
    const r = perRoute.get(key) || { count: 0, sum: 0 };
    if (s.name === 'recd_http_request_duration_seconds_count') r.count += s.value;
    else if (s.name === 'recd_http_request_duration_seconds_sum') r.sum += s.value;
    else continue;
    perRoute.set(key, r);
  }
  return {
    at,
    requests: prom.sum(samples, 'recd_http_requests_total', apiRoute),
    errors: prom.sum(samples, 'recd_http_requests_total', (l) => apiRoute(l) && Number(l.status) >= 500),
    latency: prom.buckets(samples, 'recd_http_request_duration_seconds', apiRoute),
    hits: prom.sum(samples, 'recd_cache_lookups_total', (l) => l.result === 'hit'),
    lookups: prom.sum(samples, 'recd_cache_lookups_total'),
    events: prom.sum(samples, 'recd_events_total'),
    lists: prom.sum(samples, 'recd_recommendations_total'),
    perRoute,
  };
}

/** Rates and quantiles between two readings. */
export function between(a, b) {
  const dt = (b.at - a.at) / 1000;
  if (!(dt > 0)) return null;
  const requests = prom.increase(a.requests, b.requests);
  const window = prom.bucketDelta(a.latency, b.latency);
  const ms = (q) => { const v = prom.quantile(q, window); return v === null ? null : v * 1000; };
  const lookups = prom.increase(a.lookups, b.lookups);
  return {
    rps: requests / dt,
    errors: prom.increase(a.errors, b.errors) / dt,
    p50: ms(0.5),
    p90: ms(0.9),
    p99: ms(0.99),
    hitRatio: lookups > 0 ? (100 * prom.increase(a.hits, b.hits)) / lookups : null,
    events: prom.increase(a.events, b.events) / dt,
    lists: prom.increase(a.lists, b.lists) / dt,
  };
}

export async function mount(main, _params, ctx) {
  let seconds = 2;
  let timer = null;
  let last = null;
  let paused = false;
  let scrapes = 0;
  const points = 60;

  const charts = {
    rps: new Chart({ id: 'throughput', title: 'API requests per second', series: ['requests', '5xx'], seconds, points }),
    latency: new Chart({ id: 'latency', title: 'API latency (ms)', series: ['p50', 'p90', 'p99'], seconds, points, format: (v) => num(v, v < 10 ? 2 : 0) }),
    hit: new Chart({ id: 'hit-ratio', title: 'Cache hit ratio (%)', series: ['hits'], seconds, points, fixedMax: 100, format: (v) => num(v, 0) }),
    events: new Chart({ id: 'events', title: 'Events and lists per second', series: ['events', 'lists'], seconds, points }),
  };
  const status = h('p', { class: 'muted', id: 'op-status', 'aria-live': 'polite' }, 'Waiting for the first two scrapes…');
  const stats = h('div', { class: 'stats', id: 'op-stats' });
  const routes = h('div', { id: 'op-routes' });
  const interval = h('select', { id: 'op-interval', onchange: () => { seconds = Number(interval.value); for (const c of Object.values(charts)) c.o.seconds = seconds; restart(); } },
    [1, 2, 5, 10].map((n) => h('option', { value: String(n), selected: n === seconds }, `${n} s`)));
  const pause = h('button', { type: 'button', 'aria-pressed': 'false', onclick: () => {
    paused = !paused;
    pause.setAttribute('aria-pressed', String(paused));
    pause.textContent = paused ? 'Resume' : 'Pause';
    restart();
  } }, 'Pause');

  replace(main,
    h('h1', {}, 'Metrics'),
    h('p', { class: 'muted' }, 'Computed in your browser from successive scrapes of ', h('a', { href: '/metrics' }, '/metrics'),
      '; API routes (/v1/*) only. Nothing is scraped while this view is closed or the tab hidden.'),
    h('div', { class: 'row' }, h('label', { for: 'op-interval' }, 'Scrape every'), interval, pause),
    status, stats,
    h('div', { class: 'charts' }, Object.values(charts).map((c) => c.element)),
    h('h2', {}, 'Routes in the last interval'), routes);

  async function scrape() {
    if (paused || document.visibilityState === 'hidden') return;
    let text;
    let health = null;
    try {
      [text, health] = await Promise.all([api.text('/metrics'), api.get('/health').catch(() => null)]);
    } catch (err) {
      status.textContent = `Scrape failed: ${explain(err)}`;
      return;
    }
    const samples = prom.parse(text);
    const now = reading(samples, performance.now());
    scrapes += 1;
    renderStats(samples, health);
    if (last) {
      const r = between(last, now);
      if (r) {
        charts.rps.push([r.rps, r.errors]);
        charts.latency.push([r.p50, r.p90, r.p99]);
        charts.hit.push([r.hitRatio]);
        charts.events.push([r.events, r.lists]);
        renderRoutes(last, now);
        status.textContent = `Last scrape ${new Date().toLocaleTimeString()} (${scrapes} so far).`;
      }
    }
    last = now;
  }

  function renderStats(samples, health) {
    const g = (name) => prom.gauge(samples, name);
    const started = g('process_start_time_seconds');
    const rss = g('process_resident_memory_bytes');
    const cells = [
      ['backend', health ? health.backend : '—'],
      ['items', health ? num(health.items, 0) : '—'],
      ['users', health ? num(health.users, 0) : '—'],
      ['ready', g('recd_ready') === 1 ? 'yes' : 'no'],
      ['open connections', num(g('recd_open_connections'), 0)],
      ['cache entries', num(prom.sum(samples, 'recd_cache_entries'), 0)],
      ['catalog coverage', g('recd_catalog_coverage_ratio') === null ? '—' : `${num(100 * g('recd_catalog_coverage_ratio'), 1)} %`],
      ['exposure Gini', num(g('recd_exposure_gini'), 3)],
      ['memory', rss === null ? '—' : `${num(rss / 1048576, 0)} MiB`],
      ['up', started === null ? '—' : `${num((Date.now() / 1000 - started) / 60, 0)} min`],
    ];
    replace(stats, cells.map(([k, v]) => h('div', { class: 'stat' }, h('span', { class: 'muted' }, k), h('b', {}, v))));
  }

  function renderRoutes(a, b) {
    const dt = (b.at - a.at) / 1000;
    const rows = [];
    for (const [key, now] of b.perRoute) {
      const before = a.perRoute.get(key) || { count: 0, sum: 0 };
      const n = prom.increase(before.count, now.count);
      if (!n) continue;
      const mean = (prom.increase(before.sum, now.sum) / n) * 1000;
      rows.push({ cells: [h('code', {}, key), num(n / dt, 1), num(mean, 2)], n });
    }
    rows.sort((x, y) => y.n - x.n);
    replace(routes, rows.length
      ? table([{ label: 'route' }, { label: 'req/s', num: true }, { label: 'mean ms', num: true }], rows, { caption: 'Routes in the last interval' })
      : h('p', { class: 'muted' }, 'No API requests in the last interval.'));
  }

  function restart() {
    clearInterval(timer);
    timer = paused ? null : setInterval(scrape, seconds * 1000);
  }

  const onVisible = () => { if (document.visibilityState === 'visible') last = null; };
  document.addEventListener('visibilitychange', onVisible);
  await scrape();
  restart();
  return () => {
    clearInterval(timer);
    document.removeEventListener('visibilitychange', onVisible);
    ctx.announce('');
  };
}
