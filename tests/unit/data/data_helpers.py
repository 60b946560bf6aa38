"""Helpers shared by the data-layer tests: small tables in memory and on disk."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mdmt_nas.data.encode import ColumnMapping


def small_table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user": rng.integers(0, 40, n),
            "item": rng.choice(["a", "b", "c", "d", "e"], n),
            "price": rng.normal(50, 10, n),
            "age": rng.integers(18, 70, n).astype(float),
            "scene": rng.choice([1, 2, 3], n),
            "click": rng.integers(0, 2, n),
            "buy": rng.integers(0, 2, n),
            "ts": rng.permutation(n),
        }
    )


SMALL_MAPPING = ColumnMapping(
    domain="scene", labels=["click", "buy"], sparse=["user", "item"], dense=["price", "age"], timestamp="ts"
)
