"""Peer for serve-bench: the reference PyTorch SASRec (../shared/reference/seqrec_ref.py), same
configuration and catalogue, timing one user's forward pass + full scoring + top-10 on CPU with one
thread (and with all threads). Prints one JSON line."""
import argparse, json, sys, time

p = argparse.ArgumentParser()
p.add_argument("--reference", required=True, help="folder holding seqrec_ref.py")
p.add_argument("--items", type=int, required=True)
p.add_argument("--queries", type=int, default=3000)
p.add_argument("--threads", type=int, default=1)
a = p.parse_args()
sys.path.insert(0, a.reference)
import torch  # noqa: E402
import seqrec_ref  # noqa: E402

torch.set_num_threads(a.threads)
args = seqrec_ref.parse(["--model", "sasrec", "--item-mode", "id", "--threads", str(a.threads)])
model = seqrec_ref.SeqRec(a.items, args).eval()
g = torch.Generator().manual_seed(0)
seq = torch.randint(1, a.items + 1, (1, args.maxlen), generator=g)
times = []
with torch.no_grad():
    for i in range(a.queries + 200):
        t0 = time.perf_counter()
        scores = model.scores_last(seq)
        top = torch.topk(scores, 10).indices
        t1 = time.perf_counter()
        if i >= 200:
            times.append(t1 - t0)
times.sort()
q = lambda f: times[min(len(times) - 1, int(f * len(times)))] * 1e3
print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "threads": a.threads, "items": a.items,
                  "p50_ms": q(0.5), "p99_ms": q(0.99), "qps_single": len(times) / sum(times)}))
