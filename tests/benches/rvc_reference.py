"""The retrieval benchmark's data and reference: synthetic clustered features, held-out query
frames, their exact 8 nearest neighbours, RVC's IVF-Flat index, and the time RVC's own
procedure (Python faiss + numpy, infer/lib/rtrvc.py) takes per 25-frame block with one thread.

Usage: python rvc_reference.py DIR N D
  prepares (once, cached in DIR): data.npy [N, D], queries.npy [1000, D], truth.i64 [1000, 8],
  rvc.index (IVF{min(16 sqrt N, N/39)},Flat, nprobe 1, as RVC's trainer writes it)
  then prints one line: "rvc_ms_per_block <min> <median> recall <recall@8> lists <nlist>"
"""
import math
import os
import sys
import time

import faiss
import numpy as np

directory, n, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
QUERIES, BLOCK, K, RATIO, REPEATS = 1000, 25, 8, 0.75, 5
faiss.omp_set_num_threads(1)
os.makedirs(directory, exist_ok=True)
path = lambda name: os.path.join(directory, name)


def clustered(rng, rows, centres, spans):
    # A voice's features: modes (phones, registers) of unequal size, each varying along a few
    # directions of its own (content features have a low intrinsic dimension), plus noise.
    weights = rng.dirichlet(np.ones(len(centres)))
    which = rng.choice(len(centres), size=rows, p=weights)
    out = np.empty((rows, d), dtype="float32")
    for start in range(0, rows, 16384):
        part = which[start : start + 16384]
        z = rng.standard_normal((len(part), 1, spans.shape[1]), dtype="float32")
        along = (z @ spans[part]).reshape(len(part), d)
        out[start : start + len(part)] = centres[part] + along + 0.02 * rng.standard_normal((len(part), d), dtype="float32")
    return out


if not os.path.exists(path("rvc.index")):
    rng = np.random.default_rng(2026)
    modes = max(64, n // 200)
    centres = rng.standard_normal((modes, d), dtype="float32")
    spans = rng.standard_normal((modes, 16, d), dtype="float32") * (1.0 / math.sqrt(d))
    data = clustered(rng, n, centres, spans)
    queries = clustered(rng, QUERIES, centres, spans)
    exact = faiss.IndexFlatL2(d)
    exact.add(data)
    faiss.omp_set_num_threads(os.cpu_count())
    _, truth = exact.search(queries, K)
    nlist = min(int(16 * math.sqrt(n)), n // 39)  # RVC's trainer
    index = faiss.index_factory(d, f"IVF{nlist},Flat")
    if n > 200_000:
        # RVC trains k-means on every vector; at 1M × 16000 lists that is hours on two cores.
        # A 16-per-list subsample and 10 iterations keep the benchmark's setup bounded (only
        # the quality of RVC's lists is affected, not the cost of searching them).
        index.cp.max_points_per_centroid = 16
        index.cp.niter = 10
    index.train(data)
    index.add(data)
    faiss.extract_index_ivf(index).nprobe = 1
    faiss.omp_set_num_threads(1)
    np.save(path("data.npy"), data)
    np.save(path("queries.npy"), queries)
    truth.astype("int64").tofile(path("truth.i64"))
    faiss.write_index(index, path("rvc.index"))

index = faiss.read_index(path("rvc.index"))
queries = np.load(path("queries.npy"))
truth = np.fromfile(path("truth.i64"), dtype="int64").reshape(-1, K)
big_npy = index.reconstruct_n(0, index.ntotal)  # RVC keeps this second copy in memory


def rvc_block(feats):
    # infer/lib/rtrvc.py, with torch's final blend done in numpy.
    score, ix = index.search(feats, k=K)
    if (ix >= 0).all():
        weight = np.square(1 / score)
        weight /= weight.sum(axis=1, keepdims=True)
        npy = np.sum(big_npy[ix] * np.expand_dims(weight, axis=2), axis=1)
        feats = npy * RATIO + (1 - RATIO) * feats
    return feats, ix


blocks = [queries[i : i + BLOCK] for i in range(0, QUERIES, BLOCK)]
times, found = [], []
for repeat in range(REPEATS):
    for block in blocks:
        start = time.perf_counter()
        _, ix = rvc_block(block)
        times.append(time.perf_counter() - start)
        if repeat == 0:
            found.append(ix)
found = np.concatenate(found)
recall = np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)])
times = np.array(times) * 1000
print(f"rvc_ms_per_block {times.min():.4f} {np.median(times):.4f} recall {recall:.4f} lists {faiss.extract_index_ivf(index).nlist}")
