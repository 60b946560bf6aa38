"""The benchmark's numbers -> words: mean ± std over seeds and the generated findings, on made-up result sets."""

from __future__ import annotations

import math

import pytest

from mdmt_nas.benchmark import RunRecord, Stat, compare, findings, summarize

LABELS = {
    "mmoe": ("MMoE", "fixed"),
    "m3oe": ("M3oE", "fixed"),
    "ple": ("PLE", "fixed"),
    "darts": ("DARTS", "search"),
    "tpe": ("Optuna TPE", "search"),
}


def records(aucs: dict[str, list[float]], params: dict[str, int] | None = None) -> list[RunRecord]:
    """Fake finished runs: one per (model, seed) with the given mean test AUCs and matching per-cell numbers."""
    out = []
    for model, values in aucs.items():
        label, kind = LABELS[model]
        for seed, auc in enumerate(values):
            cells = [
                {"domain": "d0", "task": "click", "auc": auc - 0.01, "logloss": 0.5},
                {"domain": "d0", "task": "like", "auc": auc + 0.01, "logloss": 0.4},
            ]
            out.append(
                RunRecord(
                    model,
                    label,
                    kind,
                    seed,
                    valid_mean_auc=auc + 0.002,
                    test_mean_auc=auc,
                    test_mean_logloss=0.45,
                    cells=cells,
                    num_params=(params or {}).get(model, 1000),
                    train_seconds=1.0,
                    wall_seconds=2.0,
                )
            )
    return out


def text(aucs: dict[str, list[float]], **kw) -> str:
    return " ".join(findings(summarize(records(aucs, **kw))))


def test_stat_is_mean_and_sample_std():
    s = Stat.of([0.78, 0.79, 0.80])
    assert s.mean == pytest.approx(0.79) and s.std == pytest.approx(0.01) and s.n == 3
    assert s.fmt() == "0.7900 ± 0.0100"
    one = Stat.of([0.7])
    assert one.std == 0.0 and one.fmt() == "0.7000"
    assert Stat.of([float("nan")]).n == 0 and Stat.of([]).fmt() == "n/a"


def test_summary_per_model_and_cell():
    [m] = summarize(records({"mmoe": [0.78, 0.80]}))
    assert m.test_auc.mean == pytest.approx(0.79) and m.test_auc.std == pytest.approx(math.sqrt(2) * 0.01)
    assert m.cells_auc[("d0", "click")].mean == pytest.approx(0.78) and m.cells_auc[
        ("d0", "like")
    ].mean == pytest.approx(0.80)
    assert m.seeds == [0, 1] and m.failed_seeds == []


def test_failed_runs_are_left_out_of_the_means():
    rs = records({"mmoe": [0.78, 0.80]}) + [RunRecord("mmoe", "MMoE", "fixed", 2, status="failed", reason="boom")]
    [m] = summarize(rs)
    assert m.test_auc.n == 2 and m.failed_seeds == [2]


def test_compare_needs_more_than_the_summed_std():
    assert compare(Stat(0.80, 0.002, 3), Stat(0.79, 0.002, 3)) == "better"
    assert compare(Stat(0.79, 0.002, 3), Stat(0.80, 0.002, 3)) == "worse"
    assert compare(Stat(0.795, 0.004, 3), Stat(0.79, 0.004, 3)) == "tie"


def test_searched_beats_m3oe_and_the_best_baseline():
    t = text({"mmoe": [0.780, 0.781, 0.782], "m3oe": [0.770, 0.771, 0.772], "darts": [0.800, 0.801, 0.802]})
    assert "The highest mean test AUC is DARTS's (0.8010 ± 0.0010)" in t
    assert "better than fixed M3oE (0.7710 ± 0.0010) by +0.0300, more than the summed std 0.0020" in t
    assert "better than the best baseline MMoE (0.7810 ± 0.0010) by +0.0200" in t
    assert "Verdict: the searched architecture beats the best fixed baseline (MMoE)." in t
    assert "Against fixed M3oE, the searched architecture is better." in t


def test_a_difference_within_noise_is_a_tie_not_a_win():
    # DARTS is ahead of MMoE on average, but by less than the spread over seeds
    t = text({"mmoe": [0.780, 0.790, 0.800], "m3oe": [0.700, 0.701, 0.702], "darts": [0.785, 0.795, 0.805]})
    assert (
        "a tie with the best baseline MMoE (0.7900 ± 0.0100): the difference +0.0050 is within the summed std 0.0200"
        in t
    )
    assert (
        "Verdict: the searched architecture does not beat the best fixed baseline (MMoE), none beyond seed noise." in t
    )
    assert "better than fixed M3oE" in t


def test_searched_below_the_baselines():
    t = text(
        {
            "mmoe": [0.80, 0.801, 0.802],
            "m3oe": [0.79, 0.791, 0.792],
            "darts": [0.75, 0.751, 0.752],
            "tpe": [0.76, 0.761, 0.762],
        },
        params={"tpe": 12_345, "m3oe": 99_000},
    )
    assert "worse than fixed M3oE (0.7910 ± 0.0010) by -0.0400" in t
    assert "The Optuna TPE architecture reaches 0.7610 ± 0.0010 with 12,345 parameters (M3oE: 99,000)" in t
    assert "Verdict: the searched architectures do not beat the best fixed baseline (MMoE)." in t
    assert "Against fixed M3oE, the searched architectures are not better." in t


def test_one_of_two_searches_wins():
    t = text(
        {
            "ple": [0.78, 0.781, 0.782],
            "m3oe": [0.77, 0.771, 0.772],
            "darts": [0.80, 0.801, 0.802],
            "tpe": [0.70, 0.701, 0.702],
        }
    )
    assert "Verdict: only DARTS beats the best fixed baseline (PLE)." in t
    assert "Against fixed M3oE, DARTS is better, the other not." in t


def test_m3oe_as_the_best_baseline_is_compared_once():
    t = text({"mmoe": [0.70, 0.701, 0.702], "m3oe": [0.79, 0.791, 0.792], "tpe": [0.80, 0.801, 0.802]})
    assert "best baseline M3oE" not in t  # one comparison, not the same one twice
    assert "better than fixed M3oE (0.7910 ± 0.0010)" in t
    assert "Verdict: the searched architecture beats the best fixed baseline (M3oE)." in t


def test_single_seed_is_flagged():
    t = text({"mmoe": [0.78], "m3oe": [0.77], "tpe": [0.79]})
    assert t.startswith("Only one seed per model was run")
    assert "above fixed M3oE (0.7700) by +0.0200 (one seed: no spread to judge noise)" in t


def test_nothing_to_compare():
    assert findings([]) == ["No model finished, so there are no findings."]
    assert "No searched architecture finished" in text({"mmoe": [0.78, 0.79]})
    assert "No fixed baseline finished" in text({"tpe": [0.78, 0.79]})
