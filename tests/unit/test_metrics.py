"""Per-(domain, task) AUC and logloss, all cells at once in torch, against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from mdmt_nas.data.schema import Schema, SparseField
from mdmt_nas.metrics import EPS, cell_auc_logloss, compute_metrics


def schema(D: int, T: int) -> Schema:
    return Schema(
        sparse=[SparseField(name="f", vocab_size=3)],
        domain_names=[f"d{i}" for i in range(D)],
        tasks=[f"t{j}" for j in range(T)],
    )


@st.composite
def predictions(draw):
    D, T = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    n = draw(st.integers(0, 80))
    # few distinct scores (many ties) or free floats, including the clip boundaries 0 and 1
    pool = draw(st.sampled_from(["ties", "free"]))
    score = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0]) if pool == "ties" else st.floats(0, 1, width=32)
    p = np.array(draw(st.lists(score, min_size=n * T, max_size=n * T)), dtype=np.float32).reshape(n, T)
    y = np.array(draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n * T, max_size=n * T)), dtype=np.float32).reshape(
        n, T
    )
    dom = np.array(draw(st.lists(st.integers(0, D - 1), min_size=n, max_size=n)), dtype=np.int64)
    return D, T, p, y, dom


@settings(max_examples=200, deadline=None)
@given(predictions())
def test_every_cell_matches_scikit_learn(case):
    D, T, p, y, dom = case
    m = compute_metrics(torch.from_numpy(p), torch.from_numpy(y), torch.from_numpy(dom), schema(D, T))
    for d in range(D):
        rows = dom == d
        assert m.rows[d] == rows.sum()
        for t in range(T):
            yt, pt = y[rows, t], p[rows, t]
            assert m.positives[d, t] == yt.sum()
            if 0 < yt.sum() < len(yt):
                assert m.auc[d, t] == pytest.approx(roc_auc_score(yt, pt), abs=1e-12)
            else:
                assert math.isnan(m.auc[d, t])  # one class or no rows: undefined, as before
            if len(yt):
                pc = np.clip(pt.astype(np.float64), EPS, 1 - EPS)
                assert m.logloss[d, t] == pytest.approx(
                    float(np.mean(-(yt * np.log(pc) + (1 - yt) * np.log(1 - pc)))), rel=1e-12, abs=1e-12
                )
            else:
                assert math.isnan(m.logloss[d, t])
    defined = m.auc[~np.isnan(m.auc)]
    assert (math.isnan(m.mean_auc) and defined.size == 0) or m.mean_auc == pytest.approx(defined.mean())


def test_ties_count_half():
    """Two positives and two negatives on one score: AUC 0.5; a positive above a tied pair: 0.75."""
    auc, *_ = cell_auc_logloss(
        torch.tensor([0.3, 0.3, 0.3, 0.3]), torch.tensor([1.0, 0, 1, 0]), torch.zeros(4, dtype=torch.long), 1
    )
    assert auc.item() == 0.5
    auc, *_ = cell_auc_logloss(
        torch.tensor([0.9, 0.3, 0.3]), torch.tensor([1.0, 1, 0]), torch.zeros(3, dtype=torch.long), 1
    )
    assert auc.item() == 0.75


def test_numpy_inputs_and_an_empty_split():
    s = schema(2, 2)
    m = compute_metrics(np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32), np.zeros(0, np.int64), s)
    assert np.isnan(m.auc).all() and np.isnan(m.logloss).all() and (m.rows == 0).all()
    assert math.isnan(m.mean_auc)
