#!/usr/bin/env python3
"""Reference values for Tests/LearnTests/GRU4RecTests.swift, from the PyTorch reference model's GRU4Rec
(../shared/reference/seqrec_ref.py --model gru4rec: item vectors -> dropout -> nn.GRU(bias=False) ->
Linear(H -> d) -> tied scores) — run with the reference venv:

    $HOME/refvenv/bin/python tools/gru4rec_reference_values.py

PyTorch's GRU: gate order r, z, n; n = tanh(W_in x + r * (W_hn h)); h' = (1 - z) * n + z * h.
Weights are deterministic on both sides: the parameters the GRU4Rec network uses (the reference module
also holds unused pos_emb and ln_f, left out), sorted by PyTorch name, parameter k, flat index i:
    value = 0.4 * sin(0.37 * i + 1.3 * k)
Text table: text[r, j] = 0.5 * cos(0.11 * (r * dim + j)) with row 0 = 0.
Prints one JSON object: per case the user representations of two histories (eval mode, left-padded to
maxlen as the reference does), the mean training cross-entropy of a batch (every position; dropout off)
and a few gradient entries of every parameter.
"""
import json, math, os, sys, types
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "reference"))
import seqrec_ref as R  # noqa: E402

N, D, L, TEXT_DIM = 9, 8, 6, 5
HISTORIES = [[3, 1, 4, 1, 5, 9, 2, 6], [7, 2]]
TRAIN = [[1, 2, 3, 4, 5], [6, 7, 8], [9, 1, 9, 2, 9, 3, 9, 4, 9]]
UNUSED = ("pos_emb.", "ln_f.")


def sig(v):
    return float(f"{float(v.detach() if hasattr(v, 'detach') else v):.8g}")


def text_table():
    t = torch.tensor([[0.5 * math.cos(0.11 * (r * TEXT_DIM + j)) for j in range(TEXT_DIM)] for r in range(N + 1)],
                     dtype=torch.float32)
    t[0] = 0
    return t


def used(m):
    return sorted(((n, p) for n, p in m.named_parameters() if not n.startswith(UNUSED)), key=lambda x: x[0])


def case(mode, layers, state):
    torch.manual_seed(0)
    a = types.SimpleNamespace(model="gru4rec", item_mode=mode, hidden=D, blocks=layers, gru_hidden=state, heads=1,
                              maxlen=L, dropout=0.0, ffn_mult=1, act="relu", distill=False)
    m = R.SeqRec(N, a, text_table() if mode != "id" else None, text_dim=TEXT_DIM)
    with torch.no_grad():
        for k, (name, p) in enumerate(used(m)):
            flat = torch.tensor([0.4 * math.sin(0.37 * i + 1.3 * k) for i in range(p.numel())], dtype=torch.float32)
            p.copy_(flat.view_as(p))
    m.eval()
    out = {"names": [n for n, _ in used(m)]}
    x = torch.from_numpy(R.left_pad(HISTORIES, L))
    with torch.no_grad():
        h, _, _ = m.encode(x, m.item_table())
    out["user"] = [[sig(v) for v in h[i, -1]] for i in range(len(HISTORIES))]
    m.zero_grad()
    xi = torch.from_numpy(R.left_pad([t[:-1] for t in TRAIN], L))
    yi = torch.from_numpy(R.left_pad([t[1:] for t in TRAIN], L))
    E = m.item_table()
    hh, _, _ = m.encode(xi, E)
    sel = yi != 0
    ce = F.cross_entropy(hh[sel] @ E[1:N + 1].t(), yi[sel] - 1)
    ce.backward()
    out["loss"] = sig(ce)
    # Six entries from the middle of every used parameter's gradient (row 3 of the item table).
    grads = {}
    for name, p in used(m):
        g = p.grad.flatten()
        start = 3 * D if name == "item_emb.weight" else min(g.numel() - 6, g.numel() // 3)
        grads[name] = {"start": start, "values": [sig(v) for v in g[start:start + 6]]}
    out["grads"] = grads
    return out


res = {"id_2layers": case("id", 2, 6), "text+id": case("text+id", 1, 12), "text": case("text", 1, 4)}
print(json.dumps(res))
