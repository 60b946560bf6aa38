"""The embedded synthetic MDMT dataset: no download, deterministic from a seed.

Why a generator: searches need a dataset that (a) runs anywhere, (b) rewards
the structure the search is looking for. Here a label depends on

- a *shared* function of the row (same in every domain) and a
  *domain-specific* one (a different random function per domain), mixed by
  `shared_signal` -- so domain-specific capacity pays off when it is < 1;
- a *common* component and *task-specific* components, combined so that the
  tasks' correlation follows `task_correlation` (positive / none / negative /
  nonlinear) -- so task-specific capacity and gradient balancing matter;
- smooth functions of the row's latent vector (random small MLPs) *and*
  pairwise products of two fields' latent vectors -- so interaction experts
  (cross, field-interaction) have something a plain MLP finds harder.

The `structure` preset (`preset: structure`) turns on three knobs that a
domain-aware shared MLP cannot emulate cheaply, on imbalanced domains:

- `domain_sign_flip`: part of every signal is one function whose sign
  alternates between domains (per-domain heads or experts represent it
  directly; a shared network must learn a product of the domain and x);
- `interaction_tasks`: the pairwise field interactions drive only these
  tasks (an interaction expert on that task's path pays off);
- `correlation_flip_domain`: in that domain the tasks' common component
  enters the odd tasks with the opposite sign (per-(domain, task) heads).

Every row also carries its Bayes-optimal probability per task (the label is
Bernoulli(sigmoid(signal + noise)), so P(y | features) = E_noise[sigmoid(.)],
computed by Gauss-Hermite quadrature); `Splits.oracle` holds them for the
valid and test rows, so a report can show the ceiling no model can beat.

The world (embedding tables, MLPs, interaction weights) depends only on the
seed and the shape knobs, not on `n_rows`: a small and a large sample of the
same seed come from the same distribution. Everything is vectorised numpy;
~200k rows take about a second.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mdmt_nas.data.base import Dataset
from mdmt_nas.data.encode import ColumnMapping, encode_table
from mdmt_nas.data.split import PARTS, SplitConfig, split_indices
from mdmt_nas.data.tensors import Splits


#: largest vocabulary of a synthetic sparse field (the generator holds a latent_dim vector per category)
MAX_VOCAB = 1_000_000


#: Knob values of each preset; knobs given explicitly win over the preset's.
PRESETS: dict[str, dict[str, object]] = {
    "default": {},
    "structure": {
        "n_rows": 150_000,
        "num_domains": 4,
        "domain_imbalance": 1.0,
        "shared_signal": 0.3,
        "domain_sign_flip": 0.7,
        "correlation_strength": 0.3,
        "correlation_flip_domain": 1,
        "num_sparse": 6,
        "vocab_sizes": [10, 20, 50, 100, 200, 300],
        "popularity_exponent": 0.3,
        "interaction_pairs": [(4, 5)],
        "interaction_tasks": [1],
        "interaction_share": 0.8,
        "noise": 0.3,
        "signal_scale": 3.0,
        "positive_rates": [0.3, 0.2],
    },
}


class SyntheticParams(BaseModel):
    """Knobs of the generator; the defaults give 3 unequal domains x 2 positively correlated tasks."""

    model_config = ConfigDict(extra="forbid")
    #: a named set of knob values (`PRESETS`): `default`, or `structure` (structure matters; see the module docstring).
    preset: Literal["default", "structure"] = "default"
    n_rows: int = Field(200_000, ge=30)
    num_domains: int = Field(3, ge=1, le=64)
    num_tasks: int = Field(2, ge=1, le=16)
    #: Zipf exponent of domain sizes: P(domain d) ~ (d + 1) ** -domain_imbalance; 0 = equal sizes.
    domain_imbalance: float = Field(0.5, ge=0)
    #: share of each label signal's variance that is the same function in every domain (0..1).
    shared_signal: float = Field(0.5, ge=0, le=1)
    task_correlation: Literal["positive", "none", "negative", "nonlinear"] = "positive"
    #: share of each task's signal variance that comes from the common component (0..1).
    correlation_strength: float = Field(0.6, ge=0, le=1)
    #: positive rate per task (the logit bias is calibrated to hit it); default 0.3 .. 0.1.
    positive_rates: list[float] | None = None
    #: std of Gaussian noise added to every logit (irreducible error).
    noise: float = Field(0.5, ge=0)
    #: multiplier of the unit-variance signal in the logit (higher = easier).
    signal_scale: float = Field(2.5, gt=0)
    #: std of per-(domain, task) logit offsets: domains also differ in base rates.
    domain_bias_std: float = Field(0.3, ge=0)
    num_sparse: int = Field(8, ge=0, le=256)
    num_dense: int = Field(4, ge=0, le=256)
    #: vocabulary size per sparse field; default geometric from 20 to 2000.
    vocab_sizes: list[int] | None = None
    latent_dim: int = Field(16, ge=1, le=128)
    #: number of sparse-field pairs whose latent product enters the label signal.
    num_interactions: int = Field(4, ge=0)
    #: the interacting field pairs (indices into the sparse fields); None = `num_interactions` random pairs.
    interaction_pairs: list[tuple[int, int]] | None = None
    #: Zipf exponent of category popularity inside a field (0 = uniform).
    popularity_exponent: float = Field(1.05, ge=0)
    #: share of each signal's variance that comes from the pairwise interactions (0..1).
    interaction_share: float = Field(0.3, ge=0, le=1)
    #: how strongly feature distributions (category popularity, dense means) differ across domains.
    domain_feature_shift: float = Field(0.5, ge=0)
    #: share of each domain-specific signal's variance that is one function whose sign alternates
    #: between domains (+ in domain 0, - in domain 1, ...); the rest are independent per-domain functions.
    domain_sign_flip: float = Field(0.0, ge=0, le=1)
    #: tasks whose specific signal carries the pairwise interactions (share `interaction_share`);
    #: None = every signal carries them.
    interaction_tasks: list[int] | None = None
    #: a domain in which the common component enters the odd tasks with the opposite sign.
    correlation_flip_domain: int | None = Field(default=None, ge=0)
    seed: int = 0
    split: SplitConfig = Field(default_factory=SplitConfig)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("preset") not in (None, "default"):
            preset = PRESETS.get(str(data["preset"]))
            if preset is not None:
                return {**preset, **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> "SyntheticParams":
        if self.num_sparse + self.num_dense == 0:
            raise ValueError("num_sparse + num_dense must be at least 1")
        if self.positive_rates is not None:
            if len(self.positive_rates) != self.num_tasks:
                raise ValueError(f"positive_rates has {len(self.positive_rates)} values; num_tasks is {self.num_tasks}")
            if not all(0 < r < 1 for r in self.positive_rates):
                raise ValueError(f"positive_rates must be in (0, 1); got {self.positive_rates}")
        if self.vocab_sizes is not None:
            if len(self.vocab_sizes) != self.num_sparse:
                raise ValueError(f"vocab_sizes has {len(self.vocab_sizes)} values; num_sparse is {self.num_sparse}")
            if min(self.vocab_sizes, default=2) < 2:
                raise ValueError("every vocab size must be >= 2")
            if max(self.vocab_sizes, default=2) > MAX_VOCAB:
                raise ValueError(
                    f"vocab size {max(self.vocab_sizes):,} is too large for the synthetic generator (at most {MAX_VOCAB:,}: "
                    "it keeps a latent vector per category); for larger vocabularies use a csv/parquet dataset"
                )
        if self.num_interactions and self.num_sparse < 2:
            raise ValueError("num_interactions needs at least 2 sparse fields (set num_interactions: 0)")
        for a, b in self.interaction_pairs or []:
            if not (0 <= a < self.num_sparse and 0 <= b < self.num_sparse) or a == b:
                raise ValueError(
                    f"interaction_pairs: ({a}, {b}) is not a pair of two different sparse fields (num_sparse is {self.num_sparse})"
                )
        bad = [t for t in self.interaction_tasks or [] if not 0 <= t < self.num_tasks]
        if bad:
            raise ValueError(f"interaction_tasks {bad} are not task indices (num_tasks is {self.num_tasks})")
        if self.correlation_flip_domain is not None and self.correlation_flip_domain >= self.num_domains:
            raise ValueError(
                f"correlation_flip_domain={self.correlation_flip_domain} is not a domain (num_domains is {self.num_domains})"
            )
        return self

    def rates(self) -> list[float]:
        if self.positive_rates is not None:
            return list(self.positive_rates)
        return [0.3] if self.num_tasks == 1 else np.linspace(0.3, 0.1, self.num_tasks).round(4).tolist()

    def vocabs(self) -> list[int]:
        if self.vocab_sizes is not None:
            return list(self.vocab_sizes)
        if self.num_sparse == 1:
            return [200]
        return np.geomspace(20, 2000, self.num_sparse).round().astype(int).tolist()


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / (sd if sd > 1e-12 else 1.0)


class _RandomMLP:
    """A fixed random 1-hidden-layer tanh network R^k -> R, drawn from `rng`."""

    def __init__(self, rng: np.random.Generator, k: int, hidden: int = 32):
        self.w1 = rng.normal(0, 1.5 / np.sqrt(k), (k, hidden)).astype(np.float32)
        self.b1 = rng.normal(0, 0.5, hidden).astype(np.float32)
        self.w2 = rng.normal(0, 1 / np.sqrt(hidden), hidden).astype(np.float32)

    def __call__(self, h: np.ndarray, chunk: int = 32_768) -> np.ndarray:
        # In row chunks: the hidden activations stay cache-sized instead of n x hidden.
        out = np.empty(h.shape[0], dtype=np.float32)
        for s in range(0, h.shape[0], chunk):
            out[s : s + chunk] = np.tanh(h[s : s + chunk] @ self.w1 + self.b1) @ self.w2
        return out


class _World:
    """Everything drawn once per seed: feature distributions, embeddings, label functions."""

    def __init__(self, p: SyntheticParams):
        rng = np.random.default_rng(np.random.SeedSequence([p.seed, 1]))
        D, k = p.num_domains, p.latent_dim
        self.vocabs = p.vocabs()
        self.domain_p = np.arange(1, D + 1, dtype=float) ** -p.domain_imbalance
        self.domain_p /= self.domain_p.sum()
        # Category popularity: Zipf-like base, tilted per domain.
        self.field_p: list[np.ndarray] = []  # [D, V] per field
        for V in self.vocabs:
            base = np.arange(1, V + 1, dtype=float) ** -p.popularity_exponent
            tilt = np.exp(p.domain_feature_shift * rng.normal(0, 1, (D, V)))
            probs = base[None, :] * tilt
            self.field_p.append(probs / probs.sum(axis=1, keepdims=True))
        self.tables = [rng.normal(0, 1, (V, k)).astype(np.float32) for V in self.vocabs]
        self.dense_shift = p.domain_feature_shift * rng.normal(0, 0.5, (D, p.num_dense))
        self.dense_proj = rng.normal(0, 1, (p.num_dense, k)).astype(np.float32)
        self.dense_scale = 10.0 ** rng.integers(-1, 4, p.num_dense)  # raw dense values on mixed scales
        self.dense_offset = rng.normal(0, 3, p.num_dense) * self.dense_scale
        n_pairs = min(p.num_interactions, p.num_sparse * (p.num_sparse - 1) // 2)
        all_pairs = np.array([(a, b) for a in range(p.num_sparse) for b in range(a + 1, p.num_sparse)], dtype=int)
        self.pairs = all_pairs[rng.choice(len(all_pairs), n_pairs, replace=False)] if n_pairs else all_pairs[:0]
        if p.interaction_pairs is not None:  # after the draw above, so the rest of the world is unchanged
            self.pairs = np.array(p.interaction_pairs, dtype=int).reshape(-1, 2)
        # Components: 0 = common, 1 + t = specific to task t. Each has one shared function and,
        # per domain, its own function (drawn from a per-domain seed, so adding a domain leaves
        # the others unchanged) of the same latent vectors.
        C = 1 + p.num_tasks
        self.shared = [self._fn(rng, k) for _ in range(C)]
        self.private = [
            [self._fn(rd, k) for _ in range(C)]
            for rd in (np.random.default_rng(np.random.SeedSequence([p.seed, 3, d])) for d in range(D))
        ]  # [D][C]
        self.domain_bias = (
            rng.normal(0, p.domain_bias_std, (D, p.num_tasks)) if p.domain_bias_std else np.zeros((D, p.num_tasks))
        )
        # One function per component whose sign alternates between domains (drawn from its own
        # seed, so turning the knob on leaves the rest of the world unchanged).
        rf = np.random.default_rng(np.random.SeedSequence([p.seed, 4]))
        self.flip = [self._fn(rf, k) for _ in range(C)]
        self.flip_sign = np.where(np.arange(D) % 2 == 0, 1.0, -1.0)

    def _fn(self, rng: np.random.Generator, k: int) -> tuple[_RandomMLP, np.ndarray]:
        """One label function: a random MLP of the latent vector + weights of the pairwise interactions."""
        return _RandomMLP(rng, k), rng.normal(0, 1, (len(self.pairs), k)).astype(np.float32)


def _latent(
    tables: list[np.ndarray], proj: np.ndarray, ids: np.ndarray, dense: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-field latent vectors of the rows and their (scaled) sum with the dense projection."""
    n, k = ids.shape[0], proj.shape[1]
    emb = [t[ids[:, j]] for j, t in enumerate(tables)]  # each [n, k] float32
    h = sum(emb, np.zeros((n, k), dtype=np.float32)) + dense.astype(np.float32) @ proj
    h /= np.float32(np.sqrt(max(len(tables) + proj.shape[0], 1)))
    return emb, h


def _signal(
    fn: tuple[_RandomMLP, np.ndarray], emb: list[np.ndarray], h: np.ndarray, pairs: np.ndarray, lam: float
) -> np.ndarray:
    """Unit-variance signal: MLP of the latent sum plus (share `lam`) pairwise field interactions."""
    mlp, u = fn
    s = np.sqrt(1 - lam) * _zscore(mlp(h))
    if lam:
        inter = sum(((emb[a] * emb[b]) @ u[i]) for i, (a, b) in enumerate(pairs))
        s = s + np.sqrt(lam) * _zscore(inter)
    return s


def generate_frame(p: SyntheticParams, oracle: bool = False) -> pd.DataFrame:
    """The raw synthetic table: sparse ids f0.., raw dense x0.., domain, task_0.., ts
    (and, with `oracle`, bayes_0..: each row's Bayes-optimal probability per task)."""
    w = _World(p)
    rng = np.random.default_rng(np.random.SeedSequence([p.seed, 2]))
    n, D, T = p.n_rows, p.num_domains, p.num_tasks
    dom = rng.choice(D, size=n, p=w.domain_p)
    rows_of = [np.flatnonzero(dom == d) for d in range(D)]

    ids = np.zeros((n, p.num_sparse), dtype=np.int64)
    for j, V in enumerate(w.vocabs):
        for d, r in enumerate(rows_of):
            ids[r, j] = rng.choice(V, size=len(r), p=w.field_p[j][d])
    dense = rng.normal(0, 1, (n, p.num_dense)) + w.dense_shift[dom]

    z = _task_signals(_components(w, p, ids, dense, dom), p, dom)
    mean = p.signal_scale * z + w.domain_bias[dom].T
    logits = mean + p.noise * rng.normal(0, 1, (T, n))
    labels = np.zeros((T, n), dtype=np.int8)
    bayes = np.zeros((T, n), dtype=np.float32)
    for t, rate in enumerate(p.rates()):
        b = _calibrate(logits[t], rate)
        labels[t] = rng.random(n) < _sigmoid(logits[t] + b)
        if oracle:
            bayes[t] = _expected_sigmoid(mean[t] + b, p.noise)

    raw_dense = dense * w.dense_scale + w.dense_offset
    cols: dict[str, np.ndarray] = {f"f{j}": ids[:, j] for j in range(p.num_sparse)}
    cols.update({f"x{j}": raw_dense[:, j] for j in range(p.num_dense)})
    cols["domain"] = dom
    cols.update({f"task_{t}": labels[t] for t in range(T)})
    cols["ts"] = np.arange(n, dtype=np.int64)
    if oracle:
        cols.update({f"bayes_{t}": bayes[t] for t in range(T)})
    return pd.DataFrame(cols)


def _components(w: _World, p: SyntheticParams, ids: np.ndarray, dense: np.ndarray, dom: np.ndarray) -> np.ndarray:
    """[1 + T, n] unit-scale component signals (0 = common, 1 + t = task t's own)."""
    n, D, T = ids.shape[0], p.num_domains, p.num_tasks
    emb, h = _latent(w.tables, w.dense_proj, ids, dense)
    a, b = np.sqrt(p.shared_signal), np.sqrt(1 - p.shared_signal)
    fb, fp = np.sqrt(p.domain_sign_flip), np.sqrt(1 - p.domain_sign_flip)
    # interaction_tasks: one interaction shared by every domain, added to those tasks' own component only
    narrowed = p.interaction_tasks is not None
    comps = np.zeros((1 + T, n))
    for c in range(1 + T):
        lam = 0.0 if narrowed or not len(w.pairs) else p.interaction_share
        shared = _signal(w.shared[c], emb, h, w.pairs, lam)
        comps[c] = a * shared
        if b:
            private = np.zeros(n)
            if fp:
                per_domain = np.stack([_signal(w.private[d][c], emb, h, w.pairs, lam) for d in range(D)])
                private += fp * _decorrelate(per_domain, shared)[dom, np.arange(n)]
            if fb:
                flip = _signal(w.flip[c], emb, h, w.pairs, lam)
                flip = _zscore(flip - shared * (flip @ shared) / (shared @ shared))
                private += fb * w.flip_sign[dom] * flip
            comps[c] += b * private
        if narrowed and c - 1 in p.interaction_tasks and len(w.pairs):
            mlp, u = w.shared[c]
            inter = _zscore(sum(((emb[i] * emb[j]) @ u[k]) for k, (i, j) in enumerate(w.pairs)))
            lam = p.interaction_share
            comps[c] = np.sqrt(1 - lam) * _zscore(comps[c]) + np.sqrt(lam) * inter
    return comps


def _expected_sigmoid(mean: np.ndarray, sd: float, nodes: int = 32) -> np.ndarray:
    """E[sigmoid(mean + sd * N(0, 1))] by Gauss-Hermite quadrature (exact to ~1e-7 for sd <= 3)."""
    if sd == 0:
        return _sigmoid(mean).astype(np.float32)
    x, wts = np.polynomial.hermite_e.hermegauss(nodes)
    wts = wts / wts.sum()
    out = np.zeros_like(mean, dtype=np.float64)
    for xi, wi in zip(x, wts):
        out += wi * _sigmoid(mean + sd * xi)
    return out.astype(np.float32)


def _whiten(f: np.ndarray) -> np.ndarray:
    """Rows of `f` made zero-mean, unit-variance and mutually uncorrelated (symmetric whitening,
    which changes each row as little as possible)."""
    f = f - f.mean(axis=1, keepdims=True)
    vals, vecs = np.linalg.eigh(f @ f.T / f.shape[1])
    return vecs @ np.diag(1.0 / np.sqrt(np.maximum(vals, 1e-9))) @ vecs.T @ f


def _decorrelate(private: np.ndarray, shared: np.ndarray) -> np.ndarray:
    """The D per-domain functions made uncorrelated with the shared one and with each other.

    Independent random functions of a low-dimensional latent overlap by chance,
    and a pooled model would learn that overlap; removing it makes "how
    different the domains are" depend on `shared_signal`, not on the seed.
    """
    return _whiten(private - np.outer(private @ shared / (shared @ shared), shared))


def _task_signals(comps: np.ndarray, p: SyntheticParams, dom: np.ndarray) -> np.ndarray:
    """Unit-variance task signals whose correlation follows `task_correlation`
    (reversed for the odd tasks in `correlation_flip_domain`)."""
    comps = _whiten(comps)  # the common and task components must not overlap by chance either
    common, specific = comps[0], comps[1:]
    flipped = (
        common if p.correlation_flip_domain is None else np.where(dom == p.correlation_flip_domain, -common, common)
    )
    rho = p.correlation_strength
    out = np.empty_like(specific)
    for t in range(p.num_tasks):
        if p.task_correlation == "none":
            shared = 0.0
        elif p.task_correlation == "positive":
            shared = common if t % 2 == 0 else flipped
        elif p.task_correlation == "negative":
            shared = common if t % 2 == 0 else -flipped
        else:  # nonlinear: dependent but (nearly) uncorrelated with task 0 for odd t
            shared = common if t == 0 else _zscore(common**2 if t % 2 else np.abs(common))
        mix = np.sqrt(rho) * shared + np.sqrt(1 - rho if p.task_correlation != "none" else 1.0) * specific[t]
        out[t] = _zscore(mix)
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _calibrate(logit: np.ndarray, rate: float) -> float:
    """Bias b with mean(sigmoid(logit + b)) == rate.

    Newton steps on the monotone mean, each kept inside a shrinking bracket
    (a bisection fallback), so it converges in a few passes over the rows.
    """
    lo, hi = -40.0, 40.0
    b = float(np.log(rate / (1 - rate)) - np.median(logit))
    for _ in range(60):
        s = _sigmoid(logit + b)
        err = float(s.mean()) - rate
        if abs(err) < 1e-7:
            break
        if err < 0:
            lo = b
        else:
            hi = b
        slope = float((s * (1 - s)).mean())
        step = b - err / slope if slope > 1e-12 else 0.5 * (lo + hi)
        b = step if lo < step < hi else 0.5 * (lo + hi)
    return b


def mapping_for(p: SyntheticParams) -> ColumnMapping:
    """The column roles of `generate_frame`'s table."""
    return ColumnMapping(
        domain="domain",
        labels=[f"task_{t}" for t in range(p.num_tasks)],
        sparse=[f"f{j}" for j in range(p.num_sparse)],
        dense=[f"x{j}" for j in range(p.num_dense)],
        domain_names={str(d): f"domain_{d}" for d in range(p.num_domains)},
        timestamp="ts",
    )


class SyntheticDataset(Dataset):
    """Synthetic MDMT data with controllable domain shift, task correlation and interactions (no download)."""

    name: ClassVar[str] = "synthetic"
    Params: ClassVar[type[BaseModel]] = SyntheticParams

    def load(self) -> Splits:
        p: SyntheticParams = self.params  # type: ignore[assignment]
        frame = generate_frame(p, oracle=True)
        self.info = {"rows": len(frame)}
        bayes = [f"bayes_{t}" for t in range(p.num_tasks)]
        splits = encode_table(frame.drop(columns=bayes), mapping_for(p), p.split, where="synthetic")
        idx = split_indices(len(frame), p.split, frame, "ts", "synthetic")
        probs = frame[bayes].to_numpy(dtype=np.float32)
        splits.oracle = {name: torch.from_numpy(probs[i]) for name, i in zip(PARTS, idx)}
        return splits
