"""The shape of a multi-domain multi-task dataset, independent of where rows come from.

A model is built from an `Architecture` plus a `Schema`: the schema says how
many sparse fields (and their vocabularies), dense features, domains and tasks
there are, which is all the model needs to know about the data.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SparseField(BaseModel):
    """A categorical feature; ids are in [0, vocab_size), 0 is reserved for unknown/padding."""

    model_config = ConfigDict(extra="forbid")
    name: str
    vocab_size: int = Field(ge=1)


class Schema(BaseModel):
    """Columns of an MDMT dataset after encoding."""

    model_config = ConfigDict(extra="forbid")
    sparse: list[SparseField] = Field(default_factory=list)
    dense: list[str] = Field(default_factory=list)
    domain: str = "domain"
    domain_names: list[str] = Field(min_length=1)
    tasks: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> "Schema":
        if not self.sparse and not self.dense:
            raise ValueError("a schema needs at least one sparse or dense feature")
        names = [f.name for f in self.sparse] + list(self.dense)
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"feature names used twice: {sorted(dup)}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"task names must be unique: {self.tasks}")
        return self

    @property
    def num_domains(self) -> int:
        return len(self.domain_names)

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def num_sparse(self) -> int:
        return len(self.sparse)

    @property
    def num_dense(self) -> int:
        return len(self.dense)

    @property
    def num_fields(self) -> int:
        """Fields the embedding layer produces: one per sparse feature and one per dense feature."""
        return self.num_sparse + self.num_dense
