"""examples/m3oe.yaml has the parameters of the public M3oE reference model (github
Applied-Machine-Learning-Lab/M3oE, `MDMTRec` as its run_movielens.py builds it).

The reference figure is derived from its architecture below and was checked once against
the real code: on MovieLens-100K converted to its ml-1m.csv layout by
benchmarks/reference_m3oe.py, run_movielens.py's `trainable params` is 631,922
(2026-12-01). Set $MDMT_NAS_M3OE_REFERENCE to a checkout to repeat that check here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mdmt_nas.config import load_config
from mdmt_nas.data.schema import Schema, SparseField
from mdmt_nas.model import build_model

ROOT = Path(__file__).resolve().parents[3]
#: distinct values per sparse column of ML-100K in the reference's layout (the reference's LabelEncoder vocabularies)
ML100K_VOCAB = {"user_id": 943, "movie_id": 1682, "gender": 2, "occupation": 21, "zip": 795, "genre": 19}
#: run_movielens.py's `trainable params` on that file
REFERENCE_PARAMS_ML100K = 631_922


def reference_param_count(
    vocab: list[int],
    num_dense: int,
    D: int,
    T: int,
    E: int = 16,
    star: int = 512,
    rep: int = 256,
    out: int = 64,
    n_shared: int = 4,
) -> tuple[int, int]:
    """(embedding, other) parameters of the reference MDMTRec with fcn_dims [star, rep, rep, out].

    Its input is one E-dim embedding per sparse field plus the domain indicator (a sparse feature
    too) and each dense value as it is; skip = MLP_N([in, rep]); star layer in -> star (shared and
    D slot weights and biases); star_mlp = MLP_N([star, rep]); n_shared + D + T experts
    MLP_N([rep, out]) = one Linear + LayerNorm + ReLU; D*T gates Linear(rep, n_shared); D*T towers
    Linear(out, out), LayerNorm, ReLU, Linear(out, 1); four scalars exp_d, exp_t, bal_d, bal_t.
    """

    def lin(a: int, b: int) -> int:
        return a * b + b

    def block(a: int, b: int) -> int:  # Linear + LayerNorm
        return lin(a, b) + 2 * b

    inp = E * (len(vocab) + 1) + num_dense
    embedding = E * (sum(vocab) + D)
    other = (
        block(inp, rep)
        + (1 + D) * lin(inp, star)
        + block(star, rep)
        + (n_shared + D + T) * block(rep, out)
        + D * T * lin(rep, n_shared)
        + D * T * (block(out, out) + lin(out, 1))
        + 4
    )
    return embedding, other


def ml100k_schema() -> Schema:
    """The schema mdmt-nas's encoder gives that file: each vocabulary + 1 (id 0 = unknown), age dense."""
    return Schema(
        sparse=[SparseField(name=n, vocab_size=v + 1) for n, v in ML100K_VOCAB.items()],
        dense=["age"],
        domain="age",
        domain_names=["under25", "25to34", "35plus"],
        tasks=["click", "like"],
    )


def test_the_formula_gives_the_reference_figure():
    emb, other = reference_param_count(list(ML100K_VOCAB.values()), 1, 3, 2)
    assert emb + other == REFERENCE_PARAMS_ML100K


def test_m3oe_example_has_the_reference_parameters_up_to_the_unknown_id_rows():
    model = build_model(load_config(ROOT / "examples" / "m3oe.yaml").arch, ml100k_schema())
    ref_emb, ref_other = reference_param_count(list(ML100K_VOCAB.values()), 1, 3, 2)
    ours_emb = model.embedding.weight.numel() + model.domain_embedding.weight.numel()
    assert model.num_parameters() - ours_emb == ref_other  # every layer has the reference's shape
    assert ours_emb - ref_emb == 16 * len(ML100K_VOCAB)  # one row per field for unknown ids
    assert model.rep_dim == 256 and model.head_dim == 64


def test_hidden_lists_layer_outputs():
    """The slip this guards against: `hidden: [256, 64]` builds 256 -> 256 -> 64 experts, one extra
    Linear(256, 256) + LayerNorm in each of the 9 experts (about twice the reference's parameters)."""
    config = load_config(ROOT / "examples" / "m3oe.yaml")
    data = config.arch.model_dump()
    for g in ("shared", "domain", "task"):
        for e in data[g]["experts"]:
            e["params"]["hidden"] = [256, 64]
    model = build_model(type(config.arch).model_validate(data), ml100k_schema())
    assert model.num_parameters() - 16 * len(ML100K_VOCAB) == REFERENCE_PARAMS_ML100K + 9 * (256 * 256 + 256 + 2 * 256)


@pytest.mark.skipif(
    not os.environ.get("MDMT_NAS_M3OE_REFERENCE"),
    reason="set MDMT_NAS_M3OE_REFERENCE to a checkout of the M3oE reference code",
)
def test_the_formula_matches_the_reference_code():
    ref = Path(os.environ["MDMT_NAS_M3OE_REFERENCE"])
    sys.path.insert(0, str(ref))
    try:
        from MDMTRec.basic.features import DenseFeature, SparseFeature
        from MDMTRec.models.multi_domain import MDMTRec
    finally:
        sys.path.remove(str(ref))
    vocab = list(ML100K_VOCAB.values()) + [3]  # the domain indicator is the reference's last sparse feature
    features = [DenseFeature(3)] + [SparseFeature(i, vocab_size=v, embed_dim=16) for i, v in enumerate(vocab)]
    model = MDMTRec(
        features,
        domain_num=3,
        task_num=2,
        fcn_dims=[512, 256, 256, 64],
        expert_num=4,
        exp_d=1,
        exp_t=1,
        bal_d=1,
        bal_t=1,
    )
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == sum(
        reference_param_count(vocab[:-1], 1, 3, 2)
    )
