#!/usr/bin/env python3
"""Reference values for Tests/LearnTests/ReferenceTests.swift, from the PyTorch reference model
(../shared/reference/seqrec_ref.py) — run with the reference venv:

    $HOME/refvenv/bin/python tools/learn_reference_values.py

Weights are deterministic on both sides: parameters sorted by (PyTorch) name, parameter k, flat index i:
    value = 0.4 * sin(0.37 * i + 1.3 * k)
Text tables: text[r, j] = 0.5 * cos(0.11 * (r * dim + j)) with row 0 = 0.
Prints one JSON object: per case the user representations of two histories (eval mode), the mean training
cross-entropy of a batch (SASRec: every position; dropout off), and a few gradient entries; plus an AdamW case.
"""
import json, math, os, sys, types
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "reference"))
import seqrec_ref as R  # noqa: E402

N, D, L, TEXT_DIM = 9, 8, 6, 5
HISTORIES = [[3, 1, 4, 1, 5, 9, 2, 6], [7, 2]]
TRAIN = [[1, 2, 3, 4, 5], [6, 7, 8], [9, 1, 9, 2, 9, 3, 9, 4, 9]]


def sig(v):
    return float(f"{float(v):.8g}")


def args(model, mode):
    a = types.SimpleNamespace(model=model, item_mode=mode, hidden=D, blocks=2, heads=2, maxlen=L, dropout=0.0,
                              ffn_mult=1 if model == "sasrec" else 4, act="relu" if model == "sasrec" else "gelu",
                              distill=False)
    return a


def text_table():
    t = torch.tensor([[0.5 * math.cos(0.11 * (r * TEXT_DIM + j)) for j in range(TEXT_DIM)] for r in range(N + 1)],
                     dtype=torch.float32)
    t[0] = 0
    return t


def set_weights(m):
    with torch.no_grad():
        for k, (name, p) in enumerate(sorted(m.named_parameters(), key=lambda x: x[0])):
            flat = torch.tensor([0.4 * math.sin(0.37 * i + 1.3 * k) for i in range(p.numel())], dtype=torch.float32)
            p.copy_(flat.view_as(p))


def case(model, mode):
    torch.manual_seed(0)
    a = args(model, mode)
    m = R.SeqRec(N, a, text_table() if mode != "id" else None, text_dim=TEXT_DIM)
    set_weights(m)
    m.eval()
    out = {}
    hs = []
    for h in HISTORIES:
        if model == "bert4rec":
            h = h[-(L - 1):] + [N + 1]
        hs.append(h)
    x = torch.from_numpy(R.left_pad(hs, L))
    E = m.item_table()
    with torch.no_grad():
        h, _, _ = m.encode(x, E)
    out["user"] = [[sig(v) for v in h[i, -1]] for i in range(len(hs))]
    if model == "sasrec":
        m.zero_grad()
        xi = torch.from_numpy(R.left_pad([t[:-1] for t in TRAIN], L))
        yi = torch.from_numpy(R.left_pad([t[1:] for t in TRAIN], L))
        E = m.item_table()
        hh, _, _ = m.encode(xi, E)
        sel = yi != 0
        ce = F.cross_entropy(hh[sel] @ E[1:N + 1].t(), yi[sel] - 1)
        ce.backward()
        out["loss"] = sig(ce)
        grads = dict(m.named_parameters())
        out["grad_qkv0"] = [sig(v) for v in grads["blocks.0.attn.qkv.weight"].grad.flatten()[:6]]
        out["grad_pos"] = [sig(v) for v in grads["pos_emb.weight"].grad[L].flatten()]
        if mode == "id":
            out["grad_item3"] = [sig(v) for v in grads["item_emb.weight"].grad[3]]
        else:
            out["grad_adapter"] = [sig(v) for v in grads["adapter.weight"].grad.flatten()[:6]]
    return out


def adamw():
    p = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0, 0.0]))
    opt = torch.optim.AdamW([p], lr=1e-2, betas=(0.9, 0.98), weight_decay=0.1, eps=1e-8)
    grads = [[0.1, -0.2, 0.3, 0.0], [1.0, 0.5, -0.5, 2.0], [-0.3, 0.0, 0.1, 0.2]]
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    return [sig(v) for v in p.detach()]


res = {f"{mo}_{it}": case(mo, it) for mo, it in [("sasrec", "id"), ("sasrec", "text"), ("sasrec", "text+id"),
                                                  ("bert4rec", "id")]}
res["adamw"] = adamw()
print(json.dumps(res))
