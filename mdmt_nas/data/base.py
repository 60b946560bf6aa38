"""The dataset component interface.

A dataset class is registered through the `register_datasets` hook. It
declares its parameters as a pydantic model (`Params`) and turns them into
`Splits` (schema + train/valid/test tensors). Vocabularies and dense
normalisation are fitted on the train split only.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from mdmt_nas.data.tensors import Splits


class DatasetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Dataset:
    """Base class of registered datasets. Subclasses set `name`, `Params` and implement `load`."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = DatasetParams

    def __init__(self, params: BaseModel | None = None):
        self.params = params if params is not None else self.Params()
        #: Facts about the loaded data that the splits do not carry, filled by `load()`
        #: (e.g. "rows", "users", "interactions"; "notes": list of messages such as dropped rows).
        self.info: dict[str, Any] = {}

    def load(self) -> Splits:  # pragma: no cover - interface
        raise NotImplementedError
