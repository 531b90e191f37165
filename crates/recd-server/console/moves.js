// What moved between two recommendation lists: the highlight after each event.

/**
 * For each id of `next`: {kind: 'new'|'up'|'down'|'same', from, to, by} (positions are
 * 1-based; `from` is null for a new item), and the ids of `prev` that left the list.
 */
export function moves(prev, next) {
  const before = new Map(prev.map((id, i) => [id, i + 1]));
  const now = new Set(next);
  const placed = new Map();
  next.forEach((id, i) => {
    const to = i + 1;
    const from = before.has(id) ? before.get(id) : null;
    let kind = 'same';
    if (from === null) kind = 'new';
    else if (to < from) kind = 'up';
    else if (to > from) kind = 'down';
    placed.set(id, { kind, from, to, by: from === null ? 0 : Math.abs(from - to) });
  });
  const gone = prev.filter((id) => !now.has(id));
  return { placed, gone };
}

/** Counts of each kind, for the summary line. */
export function tally(result) {
  const t = { new: 0, up: 0, down: 0, same: 0, gone: result.gone.length };
  for (const m of result.placed.values()) t[m.kind] += 1;
  return t;
}

/** Share of each value of a tag field in a list of items: [[value, count]] by count. */
export function mix(items, field) {
  const counts = new Map();
  for (const it of items) {
    const v = it.item ? it.item[field] : undefined;
    const values = Array.isArray(v) ? v : v === undefined || v === null ? [] : [v];
    for (const x of values) counts.set(String(x), (counts.get(String(x)) || 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}
