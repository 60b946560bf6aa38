"""The MLflow pyfunc of an exported model: raw feature rows in, one probability per task out.

This file is the model's code ("models from code"): MLflow copies it into the
logged model and runs it when the model is loaded, so it imports nothing from
mdmt_nas. Its runtime needs are torch (the `torch.export` program, saved by
the same torch version), pandas, numpy and mlflow itself.

    model = mlflow.pyfunc.load_model("models:/NAME/1")
    model.predict(pd.DataFrame({"user": [17], "item": ["b7"], "age": [31.0], "site": [2]}))
    #    click      like
    # 0  0.1832    0.0415

Input: a DataFrame with the raw feature columns of the training data (the
domain column, the sparse and the dense columns; label columns and any other
extra columns are ignored). Sparse values unseen in training map to the
unknown id 0, as they did in training; a domain the model never trained on,
a missing column, or a missing/non-numeric dense value is a `ValueError`
naming the column and the offending values.
Output: a DataFrame with one float column per task, in the input row order.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

#: rows per call of the program (bounds the memory of one prediction)
CHUNK = 65536


def _key(value: Any) -> str | None:
    """A raw value as text, so 3, 3.0, "3" and " 3 " are the same key (None for missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value).strip()


class RawEncoder:
    """Raw rows -> (sparse int64 [n, Fs], dense float32 [n, Fd], domain int64 [n]), as the training encoding did.

    `spec` is the "encoding" entry of serving.json (written by `Encoder.serving_spec`): per sparse column
    its vocabulary (id = position + 1, 0 = unknown), per dense column its mean and std, the domain column
    with an optional raw-value -> name mapping, and the domain names in id order.
    """

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.domain_column = spec["domain"]["column"]
        self.domain_map = spec["domain"].get("names")
        self.domains = list(spec["domains"])
        self._domain_id = {name: i for i, name in enumerate(self.domains)}
        self.sparse = [f["column"] for f in spec["sparse"]]
        self.dense = [f["column"] for f in spec["dense"]]
        self.mean = np.array([f["mean"] for f in spec["dense"]], dtype=np.float64)
        self.std = np.array([f["std"] for f in spec["dense"]], dtype=np.float64)
        self._vocab: list[pd.Index | None] = []
        self._keys: list[dict[str, int]] = []
        for f in spec["sparse"]:
            vocab = f.get("vocab")
            if vocab is None:  # pre-encoded data: the column holds ids already
                self._vocab.append(None)
                self._keys.append({})
                continue
            self._vocab.append(pd.Index(vocab, dtype=object if f.get("type") == "string" else None))
            keys: dict[str, int] = {}
            for i, v in enumerate(vocab):
                keys.setdefault(_key(v), i + 1)
            self._keys.append(keys)

    @property
    def columns(self) -> list[str]:
        """The raw columns a request must have: domain, sparse, dense."""
        return [self.domain_column, *self.sparse, *self.dense]

    def check_columns(self, df: pd.DataFrame) -> None:
        have = [str(c) for c in df.columns]
        missing = [c for c in self.columns if c not in have]
        if missing:
            extra = [c for c in have if c not in self.columns and c not in self.spec.get("tasks", [])]
            hint = f"; columns not used by the model: {', '.join(map(repr, extra))}" if extra else ""
            raise ValueError(
                f"missing input column(s) {', '.join(map(repr, missing))}; the model takes the raw feature columns "
                f"{', '.join(map(repr, self.columns))} (those of the training data, without the labels){hint}"
            )

    def encode(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.check_columns(df)
        n = len(df)
        domain = self.domain_ids(df[self.domain_column])
        sparse = np.zeros((n, len(self.sparse)), dtype=np.int64)
        for j, c in enumerate(self.sparse):
            sparse[:, j] = self.sparse_ids(j, df[c])
        if self.dense:
            raw = np.empty((n, len(self.dense)), dtype=np.float64)
            for j, c in enumerate(self.dense):
                col = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                bad = ~np.isfinite(col)
                if bad.any():
                    shown = pd.Series(df[c].to_numpy()[bad][:5]).tolist()
                    raise ValueError(
                        f"dense column {c!r} has {int(bad.sum())} missing, infinite or non-numeric value(s), e.g. {shown}; "
                        "send numbers (the model was trained without missing values)"
                    )
                raw[:, j] = col
            dense = ((raw - self.mean) / self.std).astype(np.float32)
        else:
            dense = np.zeros((n, 0), dtype=np.float32)
        return sparse, dense, domain

    def sparse_ids(self, j: int, values: pd.Series) -> np.ndarray:
        vocab = self._vocab[j]
        if vocab is None:
            return pd.to_numeric(values, errors="coerce").fillna(0).to_numpy(dtype=np.int64)
        try:
            ids = vocab.get_indexer(values.to_numpy()) + 1
        except (TypeError, ValueError):
            ids = np.zeros(len(values), dtype=np.int64)
        miss = ids == 0
        if miss.any():  # another type than in training (e.g. "3" for 3): match by text
            keys = self._keys[j]
            ids[miss] = [keys.get(_key(v), 0) for v in values.to_numpy()[miss]]
        return ids.astype(np.int64)

    def domain_ids(self, values: pd.Series) -> np.ndarray:
        raw = values.to_numpy()
        distinct, inverse = np.unique(np.array([_key(v) or "" for v in raw], dtype=object), return_inverse=True)
        ids = np.empty(len(distinct), dtype=np.int64)
        unknown = []
        for i, key in enumerate(distinct):
            name = key if self.domain_map is None else self.domain_map.get(key)
            d = self._domain_id.get(name, -1) if name else -1
            ids[i] = d
            if d < 0:
                unknown.append(key or "<missing>")
        if unknown:
            raise ValueError(
                f"domain column {self.domain_column!r} has value(s) {sorted(unknown)[:10]} that the model never trained on; "
                f"known domains: {', '.join(map(repr, self.domains))}"
                + (f" (raw values {sorted(self.domain_map)[:10]})" if self.domain_map else "")
            )
        return ids[inverse].reshape(-1)


def input_example(spec: dict[str, Any], rows_per_domain: int = 1) -> pd.DataFrame:
    """Raw rows built from the encoding: every domain, frequent sparse values, dense means (typed as in training)."""
    enc = spec
    casts = {"long": int, "double": float, "boolean": lambda k: k == "True", "string": str}
    dom = enc["domain"]
    raw_domain = {}
    for name in enc["domains"]:
        keys = [k for k, n in (dom.get("names") or {}).items() if n == name] or [name]
        raw_domain[name] = casts.get(dom.get("type", "string"), str)(keys[0])
    rows = []
    for i in range(rows_per_domain * len(enc["domains"])):
        row: dict[str, Any] = {dom["column"]: raw_domain[enc["domains"][i % len(enc["domains"])]]}
        for f in enc["sparse"]:
            vocab = f.get("vocab")
            row[f["column"]] = vocab[i % len(vocab)] if vocab else (0 if vocab is None else None)
        for f in enc["dense"]:
            row[f["column"]] = round(f["mean"] + (i % 3 - 1) * f["std"] / 2, 6)
        rows.append(row)
    df = pd.DataFrame(rows)
    for f in enc["sparse"]:
        if f.get("type") == "long" and f.get("vocab"):
            df[f["column"]] = df[f["column"]].astype("int64")
    return df


def _load_serving(path: str) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


try:
    from mlflow.pyfunc import PythonModel
except ImportError:  # the encoder above is usable without mlflow
    PythonModel = object  # type: ignore[assignment,misc]


class RawScoresModel(PythonModel):  # type: ignore[misc,valid-type]
    """pyfunc: raw DataFrame -> DataFrame of probabilities, one column per task (artifacts: program, serving)."""

    def load_context(self, context):
        import torch

        self.serving = _load_serving(context.artifacts["serving"])
        self.tasks = list(self.serving["tasks"])
        self.encoder = RawEncoder(self.serving["encoding"])
        self.program = torch.export.load(context.artifacts["program"]).module()

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would derive a signature from them
        import torch

        df = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if len(df) == 0:
            return pd.DataFrame({t: pd.Series(dtype=np.float32) for t in self.tasks})
        sparse, dense, domain = self.encoder.encode(df)
        out = []
        with torch.no_grad():
            for s in range(0, len(df), CHUNK):
                out.append(
                    self.program(
                        torch.from_numpy(sparse[s : s + CHUNK]),
                        torch.from_numpy(dense[s : s + CHUNK]),
                        torch.from_numpy(domain[s : s + CHUNK]),
                    ).numpy()
                )
        return pd.DataFrame(np.concatenate(out), columns=self.tasks, index=df.index)


if __name__ != "mdmt_nas.serving.pyfunc_model":  # run by MLflow as the logged model's code
    import mlflow.models

    mlflow.models.set_model(RawScoresModel())
