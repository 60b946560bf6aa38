"""Built-in datasets, registered through the same hook a third-party plugin uses."""

from __future__ import annotations

from mdmt_nas.data.aliccp import AliCCPDataset
from mdmt_nas.data.aliexpress import AliExpressDataset
from mdmt_nas.data.kuairand import KuaiRandDataset
from mdmt_nas.data.movielens import ML1MDataset, ML100KDataset, ML100KOriginalDataset
from mdmt_nas.data.synthetic import SyntheticDataset
from mdmt_nas.data.tabular import CsvDataset, ParquetDataset
from mdmt_nas.plugins import hookimpl


@hookimpl
def register_datasets(register):
    register(SyntheticDataset)
    register(CsvDataset)
    register(ParquetDataset)
    register(ML100KDataset)
    register(ML100KOriginalDataset)
    register(ML1MDataset)
    register(KuaiRandDataset)
    register(AliCCPDataset)
    register(AliExpressDataset)
