"""Comparison peer for IndexBench (benchmark-only; never used by RecDB at run time).

Loads the Faiss payload IndexBench extracted from a RecDB-serialized index, and the same float32 queries,
then for each "run" line on stdin times a loop of single-query `index.search` calls with the faiss-cpu wheel
(one OpenMP thread, same efSearch) and prints "<seconds> <labels...>". "quit" ends it.

    python faiss_python_peer.py INDEX.faiss QUERIES.f32 K EF_SEARCH
"""
import sys
import time

import faiss
import numpy as np


def main():
    payload, query_file, k, ef = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    index = faiss.read_index(payload)
    queries = np.fromfile(query_file, dtype=np.float32).reshape(-1, index.d)
    faiss.omp_set_num_threads(1)
    params = faiss.SearchParametersHNSW()
    params.efSearch = ef
    rows = [queries[i:i + 1] for i in range(len(queries))]
    print("ready", faiss.__version__, flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        labels = []
        start = time.perf_counter()
        for q in rows:
            _, I = index.search(q, k, params=params)
            labels.append(I)
        elapsed = time.perf_counter() - start
        flat = np.concatenate(labels).ravel()
        print(f"{elapsed:.9f} " + " ".join(map(str, flat.tolist())), flush=True)


if __name__ == "__main__":
    main()
