"""PyTorch peer for EncoderBench: sentence-transformers on CPU embedding the same titles.

Called by the Swift benchmark (interleaved with its own rounds) as
    python st_peer.py MODEL_DIR TITLES_TSV BATCH_SIZE THREADS [LIMIT]
Prints one JSON line: {"seconds": encode wall time, "cpu_seconds": CPU time of all threads, "sentences": n, "torch_threads": t, ...}.
Model loading and a small warm-up are excluded from the timing, as on the Swift side.
"""
import json
import sys
import time

import torch


def read_titles(path, limit):
    titles = []
    with open(path, encoding="utf-8") as f:
        next(f)  # header: item_id, asin, title
        for line in f:
            parts = line.rstrip("\n").split("\t")
            titles.append(parts[2] if len(parts) > 2 else "")
    return titles[:limit] if limit else titles


def main():
    model_dir, tsv, batch_size, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    limit = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    torch.set_num_threads(threads)
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device="cpu")
    titles = read_titles(tsv, limit)
    model.encode(titles[:64], batch_size=batch_size)  # warm-up (allocator, kernels)
    start, cpu_start = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        vectors = model.encode(titles, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "sentences": len(titles), "torch_threads": torch.get_num_threads(),
                      "dimension": int(vectors.shape[1]), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
