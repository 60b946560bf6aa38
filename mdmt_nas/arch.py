"""The architecture spec: plain data that fully determines a model.

An `Architecture` names components (by registered name, with their params) and
says how they are wired: an optional input adapter on the per-field
embeddings, an optional bottom, up to three expert groups (shared by all rows,
one per domain, one per task), per-head gates, level-1 fusion inside the
domain and task groups, level-2 fusion across groups, towers, adapters and the
training-time balancer. A searched architecture is saved as this JSON and
rebuilt from it alone.

    input -> [input_adapter] -> [bottom] -> experts: shared | domain | task
          -> gates (per task or per (domain, task) head) over `gate_scope`
          -> level-1 fusion of groups outside the gate scope -> level-2 fusion
          -> towers -> one logit per task for each row (its own domain's head)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mdmt_nas.files import config_error, load_yaml_or_json, write_text

GroupName = Literal["shared", "domain", "task"]


class ComponentSpec(BaseModel):
    """A registered component by name, with its params (validated by the component's Params)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    def key(self) -> str:
        """Canonical text of this spec: equal keys mean interchangeable experts (one batched bank)."""
        return json.dumps(self.model_dump(), sort_keys=True)


class ExpertGroup(BaseModel):
    """The experts of one owner (the whole model, each domain, or each task).

    `experts` may mix types (heterogeneous experts); write `{expert: mlp, num: 4}`
    as shorthand for four identical ones. `fusion` is the level-1 fusion used when
    the group is outside the gate scope (default `own`: each row/head keeps its
    own member).
    """

    model_config = ConfigDict(extra="forbid")
    experts: list[ComponentSpec] = Field(min_length=1)
    fusion: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="own"))

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        if isinstance(v, dict) and "expert" in v:
            v = dict(v)
            expert = v.pop("expert")
            num = v.pop("num", 1)
            if not isinstance(num, int) or isinstance(num, bool) or num < 1:
                raise ValueError(f"num must be a positive integer, got {num!r}")
            v["experts"] = [expert] * num
        return v


class Architecture(BaseModel):
    """Everything needed to build a model for a given data schema."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", description="label only; not part of the id")
    embedding_dim: int = Field(default=16, ge=1, le=1024)
    domain_feature: bool = Field(
        default=True,
        description="add a learned domain embedding as an input field (the M3oE reference feeds the domain indicator as a feature)",
    )
    dense_input: Literal["project", "raw"] = Field(
        default="project",
        description="project: each dense value times a learned embedding_dim vector (one input field per dense column); "
        "raw: the dense values appended to the flat input as they are (one input unit each, as the M3oE reference does; "
        "they are then not part of the per-field embeddings that field-wise components read)",
    )
    input_adapter: ComponentSpec | None = None
    bottom: ComponentSpec | None = None
    shared: ExpertGroup | None = None
    domain: ExpertGroup | None = None
    task: ExpertGroup | None = None
    levels: int = Field(default=1, ge=1, le=8, description="PLE-style extraction levels")
    gate: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="softmax"))
    gate_scope: list[GroupName] | None = Field(
        default=None, description="groups the per-head gate mixes; default: ['shared'] if there is a shared group"
    )
    gate_detach_input: bool = False
    fusion: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="sum"))
    heads: Literal["task", "domain_task"] = "task"
    tower: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="mlp_tower"))
    adapter: ComponentSpec | None = None
    adapter_sites: list[Literal["bottom", "experts", "towers"]] = Field(default_factory=list)
    balancer: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="equal"))

    @field_validator("gate_scope", "adapter_sites")
    @classmethod
    def _unique(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"entries must be unique, got {v}")
        return v

    @model_validator(mode="after")
    def _wiring(self) -> Architecture:
        groups = self.groups()
        if self.gate_scope is None:
            self.gate_scope = ["shared"] if "shared" in groups else []
        for g in self.gate_scope:
            if g not in groups:
                raise ValueError(
                    f"gate_scope names {g!r} but the architecture has no {g!r} expert group; remove it from gate_scope or add the group"
                )
        if "shared" in groups and "shared" not in self.gate_scope:
            raise ValueError(
                "the shared expert group must be in gate_scope (it has no level-1 fusion); add 'shared' to gate_scope"
            )
        if self.adapter_sites and self.adapter is None:
            raise ValueError("adapter_sites is set but no adapter is given; set `adapter` or clear `adapter_sites`")
        if self.adapter is not None and not self.adapter_sites:
            raise ValueError(
                "an adapter is given but adapter_sites is empty; choose where it goes: bottom, experts, towers"
            )
        if "bottom" in self.adapter_sites and self.bottom is None:
            raise ValueError("adapter_sites includes 'bottom' but there is no bottom")
        if "experts" in self.adapter_sites and not groups:
            raise ValueError("adapter_sites includes 'experts' but there are no expert groups")
        if self.levels > 1:
            if "task" not in groups or "task" not in self.gate_scope:
                raise ValueError("levels > 1 (PLE extraction) needs a task group inside gate_scope")
        return self

    # -- derived views -------------------------------------------------------------
    def groups(self) -> dict[str, ExpertGroup]:
        return {g: grp for g in ("shared", "domain", "task") if (grp := getattr(self, g)) is not None}

    def canonical(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data.pop("name", None)
        if data.get("dense_input") == "project":  # added later: the default keeps earlier ids
            data.pop("dense_input")
        return data

    @property
    def id(self) -> str:
        """Stable short id: hash of the canonical JSON (name excluded)."""
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    # -- persistence ---------------------------------------------------------------
    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent, exclude_defaults=False)

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        return cls.model_validate_json(text)

    def save(self, path: str | Path) -> Path:
        return write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Architecture:
        data = load_yaml_or_json(path)
        if isinstance(data, dict) and "arch" in data and "embedding_dim" not in data:
            data = data["arch"]
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise config_error(exc, str(path)) from None

    # -- display -------------------------------------------------------------------
    def summary(self) -> str:
        """A few human-readable lines."""

        def comp(c: ComponentSpec | None) -> str:
            if c is None:
                return "-"
            if not c.params:
                return c.name
            return c.name + "(" + ", ".join(f"{k}={v}" for k, v in sorted(c.params.items())) + ")"

        def group(g: ExpertGroup) -> str:
            counts: dict[str, int] = {}
            for e in g.experts:
                counts[comp(e)] = counts.get(comp(e), 0) + 1
            return " + ".join(f"{n}x {k}" for k, n in counts.items())

        lines = [f"Architecture {self.id}" + (f" ({self.name})" if self.name else "")]
        lines.append(
            f"  input      emb={self.embedding_dim} adapter={comp(self.input_adapter)} bottom={comp(self.bottom)}"
        )
        per = {"shared": "", "domain": " per domain", "task": " per task"}
        for g, grp in self.groups().items():
            fusion = "" if g in self.gate_scope or g == "shared" else f", level-1 fusion {comp(grp.fusion)}"
            lines.append(f"  {g:<10} {group(grp)}{per[g]}{fusion}")
        gated = [g for g in self.gate_scope if g in self.groups()]
        if gated:
            lines.append(
                f"  gate       {comp(self.gate)} over {'+'.join(gated)}"
                f"{' (stop-gradient input)' if self.gate_detach_input else ''}, levels={self.levels}"
            )
        elif self.groups():
            lines.append(
                f"  gate       none (no expert group in gate_scope: each group has its level-1 fusion), levels={self.levels}"
            )
        lines.append(
            f"  fusion     {comp(self.fusion)}; heads per {self.heads.replace('_', ' x ')}; tower {comp(self.tower)}"
        )
        if self.adapter:
            lines.append(f"  adapter    {comp(self.adapter)} at {', '.join(self.adapter_sites)}")
        lines.append(f"  balancer   {comp(self.balancer)}")
        return "\n".join(lines)
