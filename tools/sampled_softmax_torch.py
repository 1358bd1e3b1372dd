#!/usr/bin/env python3
"""PyTorch peer of RecDB's sampled-softmax SASRec training (issue #14): the same model, the same windows and
the same loss on the same data, timed per epoch on CPU. Used by scripts/bench-scale.sh (part `torch`), which
alternates it with `rdbctl train` in one run. Benchmark tooling only: nothing here runs inside RecDB.

Data: a `user item1 item2 ...` file (`rdbctl generate --format sequences`); item tokens are mapped to ids
1..n in order of first appearance. Leave-one-out: each user's training part is s[:-2].
Windows (`--windows all` in RecDB): non-overlapping windows of each training part from the newest back; a
window ending at t trains inputs s[t-1-m : t-1] against targets s[t-m : t], m = min(t-1, maxlen).
Model: SASRec as ../shared/reference/seqrec_ref.py (pre-LN causal blocks, d 64, 2 blocks, 1 head, FFN d->d
ReLU, LayerNorm eps 1e-8, dropout 0.2, item vectors x sqrt(d) + learned positions, final LayerNorm, scores
tied to the item table). Loss (Sources/Learn/Engine/SampledSoftmaxCrossEntropy.swift, `trainingGroups` = 4):
the batch's scored positions (row-major) are split into `--groups` contiguous groups, as even as possible;
each group draws its own N candidates, half the targets of uniformly drawn positions of the group and half
uniform over the catalogue, deduplicated; each candidate's logit is corrected by -log pi, pi = 1 - (1 - q)^N,
q = f c_j / P + (1 - f) / n (c_j = j's count among the group's P targets); the positive's logit is not
corrected; a candidate equal to a row's positive is masked from that row; mean over the batch's positions.
Optimiser: AdamW (lr 1e-3, betas 0.9/0.98, weight decay 1e-4) on the dense parameters; the item table either
`sparse` (sparse gradients + SparseAdam: only touched rows move, as RecDB's row-sparse AdamW) or `dense`
(ordinary AdamW over the whole table every step, O(catalogue) per step). The item table's learning rate is
RecDB's automatic one (`ModelConfiguration.resolvedItemTableLearningRate`): 5 x lr above 50,000 items, lr at
or below (`--item-lr` overrides).
Batches are padded to the longest window in the batch (`--pad batch`) or to maxlen (`--pad max`).

Output: one JSON line per epoch: seconds, windows, positions, steps, loss.
"""
import argparse
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read(path):
    ids = {}
    seqs = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) < 2:
                continue
            s = []
            for tok in p[1:]:
                j = ids.get(tok)
                if j is None:
                    j = ids[tok] = len(ids) + 1
                s.append(j)
            seqs.append(s)
    return seqs, len(ids)


def windows(seqs, L):
    out = []
    for s in seqs:
        t = s[:-2]
        end = len(t)
        while end >= 2:
            m = min(end - 1, L)
            out.append((t[end - 1 - m:end - 1], t[end - m:end]))
            end -= L
    return out


class Block(nn.Module):
    def __init__(self, d, dropout):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-8), nn.LayerNorm(d, eps=1e-8)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.l1, self.l2 = nn.Linear(d, d), nn.Linear(d, d)
        self.p = dropout
        self.d1, self.d2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x, allowed, keep):
        B, L, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, L, 3, 1, d).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=self.p if self.training else 0.0)
        x = x + self.out(y.transpose(1, 2).reshape(B, L, d))
        x = x + self.d2(self.l2(self.d1(F.relu(self.l1(self.ln2(x))))))
        return x * keep


class SASRec(nn.Module):
    def __init__(self, n, d, L, blocks, dropout, sparse):
        super().__init__()
        self.n, self.d, self.sparse = n, d, sparse
        self.item = nn.Embedding(n + 1, d, padding_idx=0, sparse=sparse)
        self.pos = nn.Embedding(L + 1, d, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(d, dropout) for _ in range(blocks)])
        self.ln_f = nn.LayerNorm(d, eps=1e-8)
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.xavier_normal_(p)
        with torch.no_grad():
            self.item.weight[0].zero_()
            self.pos.weight[0].zero_()

    def rows(self, ids):
        return F.embedding(ids, self.item.weight, padding_idx=0, sparse=self.sparse)

    def forward(self, seqs):
        B, L = seqs.shape
        valid = seqs != 0
        keep = valid.unsqueeze(-1).float()
        positions = torch.arange(1, L + 1).unsqueeze(0) * valid
        x = self.rows(seqs) * math.sqrt(self.d) + self.pos(positions)
        x = self.drop(x) * keep
        causal = torch.tril(torch.ones(L, L, dtype=torch.bool))
        allowed = (valid[:, None, None, :] & causal) | torch.eye(L, dtype=torch.bool)
        for b in self.blocks:
            x = b(x, allowed, keep)
        return self.ln_f(x)


def sampled_loss(model, h, targets, N, f, groups, gen):
    """h [P, d] hidden states at the scored positions, targets [P] ids 1..n; returns the mean over the P rows."""
    n, P = model.n, targets.shape[0]
    G = min(groups, P)
    bounds = [g * P // G for g in range(G + 1)]
    inb = int(round(N * f))
    f = inb / N  # the share actually drawn in-batch, as RecDB's q uses

    def log_pi(ids, tg):
        # q_j = f c_j / P + (1 - f) / n, c_j = j's count among the group's targets tg; pi = 1 - (1 - q)^N.
        tu, tc = torch.unique(tg, return_counts=True)
        pos = torch.searchsorted(tu, ids).clamp(max=tu.numel() - 1)
        c = torch.where(tu[pos] == ids, tc[pos], torch.zeros_like(ids)).double()
        q = (f * c / tg.numel() + (1 - f) / n).clamp(max=1.0)
        return torch.log((-torch.expm1(N * torch.log1p(-q))).clamp(min=1e-300)).float()

    # Each group's own draw (groups in row order), then one gather of every group's candidate rows.
    cands = []
    for g in range(G):
        tg = targets[bounds[g]:bounds[g + 1]]
        draws = torch.cat([tg[torch.randint(tg.numel(), (inb,), generator=gen)],
                           torch.randint(1, n + 1, (N - inb,), generator=gen)])
        cands.append(torch.unique(draws))
    rows = model.rows(torch.cat(cands)).split([c.numel() for c in cands])
    # The positive's logit is not corrected (it is in its row's softmax with probability 1).
    positive = (h * model.rows(targets)).sum(-1)
    total = h.new_zeros(())
    for g in range(G):
        lo, hi = bounds[g], bounds[g + 1]
        tg, cand = targets[lo:hi], cands[g]
        logits = h[lo:hi] @ rows[g].t() - log_pi(cand, tg)
        logits = logits.masked_fill(cand[None, :] == tg[:, None], float("-inf"))
        pg = positive[lo:hi]
        total = total + (torch.logsumexp(torch.cat([pg[:, None], logits], 1), 1) - pg).sum()
    return total / P


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--data", required=True)
    a.add_argument("--epochs", type=int, default=1)
    a.add_argument("--items", type=int, default=0, help="catalogue size (default: the distinct items of the file); "
                   "RecDB's catalogue is every item in the store, so pass it to score against the same catalogue")
    a.add_argument("--negatives", type=int, default=2048)
    a.add_argument("--groups", type=int, default=4, help="groups of scored positions with their own draw "
                   "(RecDB's SampledSoftmaxCrossEntropy.trainingGroups)")
    a.add_argument("--item-lr", type=float, default=0.0, help="item table learning rate (0 = RecDB's automatic: "
                   "5 x 1e-3 above 50,000 items, 1e-3 at or below)")
    a.add_argument("--maxlen", type=int, default=50)
    a.add_argument("--hidden", type=int, default=64)
    a.add_argument("--blocks", type=int, default=2)
    a.add_argument("--batch", type=int, default=256)
    a.add_argument("--threads", type=int, default=2)
    a.add_argument("--optimizer", choices=["sparse", "dense"], default="sparse")
    a.add_argument("--pad", choices=["batch", "max"], default="batch")
    a.add_argument("--max-steps", type=int, default=0, help="stop an epoch after this many steps (0 = whole epoch)")
    a.add_argument("--seed", type=int, default=0)
    a = a.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.time()
    seqs, n = read(a.data)
    n = max(n, a.items)
    ws = windows(seqs, a.maxlen)
    load_s = time.time() - t0
    model = SASRec(n, a.hidden, a.maxlen, a.blocks, 0.2, a.optimizer == "sparse")
    item_lr = a.item_lr or (5e-3 if n > 50_000 else 1e-3)
    dense = [p for name, p in model.named_parameters() if name != "item.weight"]
    if a.optimizer == "sparse":
        opts = [torch.optim.AdamW(dense, lr=1e-3, betas=(0.9, 0.98), weight_decay=1e-4),
                torch.optim.SparseAdam([model.item.weight], lr=item_lr, betas=(0.9, 0.98))]
    else:
        opts = [torch.optim.AdamW([{"params": dense}, {"params": [model.item.weight], "lr": item_lr}],
                                  lr=1e-3, betas=(0.9, 0.98), weight_decay=1e-4)]
    gen = torch.Generator().manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    model.train()
    for epoch in range(1, a.epochs + 1):
        order = rng.permutation(len(ws))
        t1 = time.time()
        steps, positions, loss_sum = 0, 0, 0.0
        for s0 in range(0, len(order), a.batch):
            batch = [ws[i] for i in order[s0:s0 + a.batch]]
            L = a.maxlen if a.pad == "max" else max(len(x) for x, _ in batch)
            inp = np.zeros((len(batch), L), dtype=np.int64)
            tgt = np.zeros((len(batch), L), dtype=np.int64)
            for r, (x, y) in enumerate(batch):
                inp[r, L - len(x):] = x
                tgt[r, L - len(y):] = y
            inp, tgt = torch.from_numpy(inp), torch.from_numpy(tgt)
            h = model(inp)
            m = tgt != 0
            loss = sampled_loss(model, h[m], tgt[m], a.negatives, 0.5, a.groups, gen)
            for o in opts:
                o.zero_grad(set_to_none=True)
            loss.backward()
            for o in opts:
                o.step()
            steps += 1
            positions += int(m.sum())
            loss_sum += float(loss.detach())
            if a.max_steps and steps >= a.max_steps:
                break
        sec = time.time() - t1
        full_steps = (len(ws) + a.batch - 1) // a.batch
        print(json.dumps({"engine": "pytorch", "epoch": epoch, "seconds": sec, "steps": steps, "epoch_steps": full_steps,
                          "seconds_per_epoch": sec * full_steps / steps, "windows": len(ws), "positions": positions,
                          "items": n, "loss": loss_sum / max(steps, 1), "negatives": a.negatives, "groups": a.groups, "item_lr": item_lr, "threads": a.threads,
                          "optimizer": a.optimizer, "pad": a.pad, "load_seconds": load_s, "torch": torch.__version__}),
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
