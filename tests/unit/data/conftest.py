"""Fixtures of the data-layer tests."""

from __future__ import annotations

import pandas as pd
import pytest

from data_helpers import SMALL_MAPPING, small_table
from mdmt_nas.data.encode import ColumnMapping


@pytest.fixture
def table() -> pd.DataFrame:
    return small_table()


@pytest.fixture
def mapping() -> ColumnMapping:
    return SMALL_MAPPING
