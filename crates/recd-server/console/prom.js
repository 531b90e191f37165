// The Prometheus text exposition format (version 0.0.4), read in the browser: the
// operator charts are computed from successive scrapes of the server's own /metrics.

/**
 * Parses an exposition into samples: [{name, labels: {k: v}, value}]. Comments, HELP and
 * TYPE lines are skipped; a malformed line is skipped rather than failing the scrape.
 */
export function parse(text) {
  const samples = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const sample = parseLine(line);
    if (sample) samples.push(sample);
  }
  return samples;
}

function parseLine(line) {
  let i = 0;
  while (i < line.length && /[A-Za-z0-9_:]/.test(line[i])) i += 1;
  const name = line.slice(0, i);
  if (!name) return null;
  const labels = {};
  if (line[i] === '{') {
    i += 1;
    for (;;) {
      while (line[i] === ' ' || line[i] === ',') i += 1;
      if (line[i] === '}') { i += 1; break; }
      const eq = line.indexOf('=', i);
      if (eq < 0 || line[eq + 1] !== '"') return null;
      const key = line.slice(i, eq).trim();
      let value = '';
      let j = eq + 2;
      for (; j < line.length && line[j] !== '"'; j += 1) {
        if (line[j] === '\\' && j + 1 < line.length) {
          j += 1;
          value += line[j] === 'n' ? '\n' : line[j];
        } else {
          value += line[j];
        }
      }
      if (j >= line.length) return null;
      labels[key] = value;
      i = j + 1;
    }
  }
  const rest = line.slice(i).trim().split(/\s+/);
  const value = parseValue(rest[0]);
  if (value === null) return null;
  return { name, labels, value };
}

function parseValue(text) {
  if (text === undefined) return null;
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  const v = Number(text);
  return Number.isNaN(v) ? null : v;
}

/** The sum of the samples named `name` whose labels pass `keep`. */
export function sum(samples, name, keep = () => true) {
  let total = 0;
  for (const s of samples) if (s.name === name && keep(s.labels)) total += s.value;
  return total;
}

/** The first value of `name` (a gauge without labels), or null. */
export function gauge(samples, name) {
  const s = samples.find((x) => x.name === name);
  return s ? s.value : null;
}

/** Cumulative bucket counts of histogram `name` summed over the series `keep` passes: Map le → count. */
export function buckets(samples, name, keep = () => true) {
  const out = new Map();
  for (const s of samples) {
    if (s.name !== `${name}_bucket` || !keep(s.labels)) continue;
    const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
    out.set(le, (out.get(le) || 0) + s.value);
  }
  return out;
}

/** b - a per bucket (what happened between two scrapes); a counter reset counts from zero. */
export function bucketDelta(a, b) {
  const out = new Map();
  for (const [le, count] of b) {
    const before = a.get(le) || 0;
    out.set(le, count >= before ? count - before : count);
  }
  return out;
}

/**
 * The q-quantile of cumulative buckets, interpolated linearly inside its bucket as
 * Prometheus' histogram_quantile does; null without observations.
 */
export function quantile(q, cumulative) {
  const bounds = [...cumulative.keys()].sort((x, y) => x - y);
  if (!bounds.length) return null;
  const total = cumulative.get(bounds[bounds.length - 1]);
  if (!total) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const le of bounds) {
    const count = cumulative.get(le);
    if (count >= rank) {
      if (le === Infinity) return lower; // beyond the last finite bound: its bound is all we know
      const inBucket = count - below;
      return inBucket > 0 ? lower + (le - lower) * ((rank - below) / inBucket) : le;
    }
    lower = le;
    below = count;
  }
  return lower;
}

/** The growth of a counter between two readings; a reset (restart) counts from zero. */
export function increase(before, after) {
  return after >= before ? after - before : after;
}
