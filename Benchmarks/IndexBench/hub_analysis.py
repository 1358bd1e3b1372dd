# Why plain inner-product HNSW builds slowly on a trained model's item vectors (issue #14): for 500 sampled rows of
# the first 100,000 of FILE.npy (`scale-bench DB --export-space SPACE FILE.npy`), the efConstruction-40 candidates and
# the links Faiss's selection heuristic keeps, under inner product and under the MIPS->L2 reduction (HNSWBuild.h).
# Usage: python3 hub_analysis.py FILE.npy
import sys
import numpy as np
x=np.load(sys.argv[1])[:100000].astype(np.float64)
rng=np.random.default_rng(0); idx=rng.choice(len(x),500,replace=False)
norm2=(x*x).sum(1); M2=norm2.max(); e=np.sqrt(M2-norm2)
top_norm=set(np.argsort(-norm2)[:1000])  # top 1% by norm
def heuristic(b, cand, dist):
    kept=[]
    for c in cand:
        dc=dist(b,c)
        if all(dist(c,k)>=dc for k in kept): kept.append(c)
        if len(kept)>=64: break
    return kept
ip=lambda a,b: -x[a]@x[b]
l2=lambda a,b: ((x[a]-x[b])**2).sum()+(e[a]-e[b])**2
for name,dist,score in [('ip',ip,lambda b: -(x@x[b])),('aug-l2',l2,lambda b: ((x-x[b])**2).sum(1)+(e-e[b])**2)]:
    kept=[];hub=[];candhub=[]
    for b in idx:
        s=score(b); s[b]=np.inf
        cand=np.argsort(s)[:40]
        k=heuristic(b,cand,dist); kept.append(len(k)); hub.append(np.mean([c in top_norm for c in k]))
        candhub.append(np.mean([c in top_norm for c in cand]))
    print(f"{name}: efConstruction-40 candidates from the top-1%-norm rows {np.mean(candhub):.2f}; links kept by the heuristic: mean {np.mean(kept):.1f} (median {np.median(kept):.0f}), of them top-1%-norm rows {np.mean(hub):.2f}")
