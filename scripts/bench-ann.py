"""Peer baseline for recd-index: hnswlib (and a numpy exact scan) on the shared catalog.

    python bench-ann.py --dir /tmp/catalog-100k [--nq 1000] [--k 10,50] [--ef 32,64,128]
        [--index-cache PATH] [--threads 2] [--build-only]

Same queries, filters and recall definition as crates/recd-index/examples/knn_latency.rs:
queries = the first --nq rows of user_vectors.npy, one at a time on one thread; filters per
query j: cat10 = items with category % 10 == j % 10, brand1 = items with brand % 100 == j % 100,
randP (e.g. rand10) = the j % 10-th of ten random P % subsets (splitmix64, as knn_latency);
recall@k = |approx ∩ exact top-k| / |exact top-k|, exact by brute force (numpy).
hnswlib: space 'cosine', M 16, efC 200, built on --threads threads (default 2), filtered via
its filter callback; searches run on one thread.
--index-cache: load hnswlib's graph from PATH if it exists (its build time is read from
PATH.build), else build it and save it there; a 1M build takes many minutes on 2 cores, so it
can run once, ahead of the interleaved query rounds. --build-only: build (or load) the graph,
save it to --index-cache, and exit without queries (bench-ann.sh runs it beside recd's build).
numpy-exact: brute force over the allowed rows, gathered into a matrix beforehand (the
"exact scan of the filtered subset" baseline). Prints TSV rows like the Rust example.
"""
import argparse
import os
import time

import numpy as np


def pct(lat, p):
    lat = sorted(lat)
    i = max(1, int(np.ceil(len(lat) * p))) - 1
    return lat[i]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--nq", type=int, default=1000)
    ap.add_argument("--k", default="10,50")
    ap.add_argument("--ef", default="32,64,128")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--efc", type=int, default=200)
    ap.add_argument("--filters", default="none,cat10,brand1")
    ap.add_argument("--index-cache", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--build-only", action="store_true")
    a = ap.parse_args()
    import hnswlib

    items = np.load(f"{a.dir}/item_vectors.npy")
    queries = np.load(f"{a.dir}/user_vectors.npy")[: a.nq]
    meta = np.load(f"{a.dir}/item_meta.npz")
    category, brand = meta["category"], meta["brand"]
    n, dim = items.shape
    ks = [int(x) for x in a.k.split(",")]
    efs = [int(x) for x in a.ef.split(",")]
    kmax = max(ks)

    index = hnswlib.Index(space="cosine", dim=dim)
    cache = a.index_cache
    if cache and os.path.exists(cache) and os.path.exists(cache + ".build"):
        index.load_index(cache, max_elements=n)
        with open(cache + ".build") as f:
            print(f"# hnswlib build (loaded from {cache}): {f.read().strip()}", flush=True)
    else:
        index.init_index(max_elements=n, ef_construction=a.efc, M=a.m)
        index.set_num_threads(a.threads)
        load = " ".join(open("/proc/loadavg").read().split()[:3])
        t = time.perf_counter()
        index.add_items(items, np.arange(n))
        built = (f"{n} x {dim}, M {a.m} efC {a.efc}, {a.threads} threads: "
                 f"{time.perf_counter() - t:.1f} s (load at the start {load})")
        print(f"# hnswlib build: {built}", flush=True)
        if cache:
            index.save_index(cache)
            with open(cache + ".build", "w") as f:
                f.write(built + f" (load at the end {' '.join(open('/proc/loadavg').read().split()[:3])})\n")
    if a.build_only:
        return
    index.set_num_threads(1)

    masks = {
        "none": [None],
        "cat10": [(category % 10) == r for r in range(10)],
        "brand1": [(brand % 100) == r for r in range(100)],
    }
    for fname in a.filters.split(","):
        if fname.startswith("rand"):
            masks[fname] = rand_masks(n, float(fname[4:]))
    print("engine\tfilter\tk\tef\tstrategy\tqps\tp50_us\tp99_us\trecall", flush=True)
    for fname in a.filters.split(","):
        ms = masks[fname]
        allowed_ids = [None if m is None else np.flatnonzero(m) for m in ms]
        subsets = [items if ids is None else items[ids] for ids in allowed_ids]
        # Python callbacks index a list of bools faster than a numpy array.
        allowed_lists = [None if m is None else m.tolist() for m in ms]
        truth = []
        for j, q in enumerate(queries):
            ids, sub = allowed_ids[j % len(ms)], subsets[j % len(ms)]
            sims = sub @ q
            top = np.argsort(-sims, kind="stable")[:kmax]
            truth.append(top if ids is None else ids[top])
        for k in ks:
            for ef in efs:
                index.set_ef(ef)
                lat, found, expected = [], 0, 0
                start = time.perf_counter()
                for j, q in enumerate(queries):
                    al = allowed_lists[j % len(ms)]
                    f = None if al is None else (lambda label, al=al: al[label])
                    t0 = time.perf_counter()
                    labels, _ = index.knn_query(q, k=k, filter=f)
                    lat.append((time.perf_counter() - t0) * 1e6)
                    want = truth[j][:k]
                    expected += len(want)
                    found += len(set(want.tolist()) & set(labels[0].tolist()))
                total = time.perf_counter() - start
                print(f"hnswlib\t{fname}\t{k}\t{ef}\tgraph\t{len(queries) / total:.0f}\t{pct(lat, .5):.0f}\t"
                      f"{pct(lat, .99):.0f}\t{found / max(expected, 1):.4f}", flush=True)
            lat = []
            start = time.perf_counter()
            for j, q in enumerate(queries):
                ids, sub = allowed_ids[j % len(ms)], subsets[j % len(ms)]
                t0 = time.perf_counter()
                sims = sub @ q
                top = np.argpartition(-sims, min(k, len(sims) - 1))[:k]
                top = top[np.argsort(-sims[top])]
                _ = top if ids is None else ids[top]
                lat.append((time.perf_counter() - t0) * 1e6)
            total = time.perf_counter() - start
            print(f"numpy\t{fname}\t{k}\t-\texact\t{len(queries) / total:.0f}\t{pct(lat, .5):.0f}\t"
                  f"{pct(lat, .99):.0f}\t1.0000", flush=True)


def splitmix(x):
    """splitmix64 on a uint64 array (wrapping), as knn_latency's `splitmix`."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def rand_masks(n, p):
    """`randP`: 10 random subsets of P % of the items, the same as knn_latency's."""
    i = np.arange(n, dtype=np.uint64)
    return [(splitmix(i ^ np.uint64(r << 40)) % np.uint64(10_000)).astype(np.float64) < p * 100.0
            for r in range(10)]


if __name__ == "__main__":
    main()
