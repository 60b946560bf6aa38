"""Export a trained architecture as a self-contained TorchScript model.

    scores = torch.jit.load("model.pt")(sparse, dense, domain)

inputs: sparse int64 [B, F_sparse] (encoded ids, 0 = unknown), dense float32
[B, F_dense], domain int64 [B]; output: probabilities float32 [B, T], each
row scored by its own domain's heads. The file needs only `torch` to run (no
mdmt_nas, no plugins): the model is traced with `torch.jit.trace` on a sample
batch (rows of a dataset, or zeros shaped by the schema) in which every domain
is present, then checked on a batch of another size with domains missing
before it is written. The architecture, the data schema and the input
description travel inside the file (`_extra_files`: arch.json, schema.json,
mdmt_nas.json).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mdmt_nas.arch import Architecture
from mdmt_nas.data.schema import Schema
from mdmt_nas.errors import ConfigError, UserError

TOLERANCE = 1e-5


class Scorer(nn.Module):
    """The model with a sigmoid: (sparse, dense, domain) -> probabilities [B, T]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, sparse: torch.Tensor, dense: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(sparse, dense, domain))


@dataclass
class ExportInfo:
    path: Path
    arch_id: str
    batch_size: int
    max_abs_diff: float
    inputs: dict[str, Any]


def load_schema(path: str | Path) -> Schema:
    path = Path(path)
    try:
        return Schema.model_validate_json(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no data schema; `mdmt-nas train` and `mdmt-nas search` write schema.json next to weights.pt "
                        "(or pass --schema FILE)") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not a valid schema.json ({exc})") from None


def load_trained(arch_path: str | Path, weights_path: str | Path, schema_path: str | Path | None = None) -> tuple[nn.Module, Architecture, Schema]:
    """Rebuild the model of `arch_path` for the schema next to the weights and load the weights (eval mode)."""
    from mdmt_nas.model import build_model

    arch = Architecture.load(arch_path)
    weights_path = Path(weights_path)
    schema = load_schema(schema_path or weights_path.parent / "schema.json")
    model = build_model(arch, schema)
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{weights_path}: file not found") from None
    except Exception as exc:  # noqa: BLE001 - not a state dict
        raise UserError(f"{weights_path}: cannot read weights ({type(exc).__name__}: {exc})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"{weights_path} does not fit the architecture {arch.id} of {arch_path}: {str(exc).splitlines()[0]}; "
                        "use the arch.json/best_arch.json written with these weights") from None
    model.eval()
    return model, arch, schema


def zero_batch(schema: Schema, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zeros shaped by the schema (sparse id 0 = unknown), domains cycling so that every domain is present."""
    return (torch.zeros(batch_size, schema.num_sparse, dtype=torch.long), torch.zeros(batch_size, schema.num_dense),
            torch.arange(batch_size, dtype=torch.long) % schema.num_domains)


def dataset_batch(splits: Any, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first rows of the valid split, topped up so that every domain appears at least once."""
    b = next(iter(splits.valid.batches(max(batch_size, 1))))
    sparse, dense, domain = b.sparse, b.dense, b.domain
    missing = [d for d in range(splits.schema.num_domains) if not bool((domain == d).any())]
    if missing:
        zs, zd, _ = zero_batch(splits.schema, len(missing))
        sparse, dense = torch.cat([sparse, zs]), torch.cat([dense, zd])
        domain = torch.cat([domain, torch.tensor(missing, dtype=torch.long)])
    return sparse, dense, domain


def check_batch(schema: Schema, trace_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random batch of another size than the trace batch, in which domain 1 (or the last) never occurs."""
    g = torch.Generator().manual_seed(seed)
    n = trace_size + 5
    sparse = torch.stack([torch.randint(0, f.vocab_size, (n,), generator=g) for f in schema.sparse], 1) if schema.sparse else torch.zeros(n, 0, dtype=torch.long)
    dense = torch.randn(n, schema.num_dense, generator=g)
    D = schema.num_domains
    allowed = [d for d in range(D) if d != min(1, D - 1)] or [0]
    domain = torch.tensor(allowed, dtype=torch.long)[torch.randint(0, len(allowed), (n,), generator=g)]
    return sparse, dense, domain


def export_model(arch_path: str | Path, weights_path: str | Path, out: str | Path, schema_path: str | Path | None = None,
                 batch_size: int = 64, splits: Any = None) -> ExportInfo:
    """Trace the trained model to TorchScript, check it on another batch, and save it to `out`."""
    model, arch, schema = load_trained(arch_path, weights_path, schema_path)
    if not getattr(model, "torchscript", True):
        bad = sorted({type(m).__name__ for m in model.modules() if m is not model and not getattr(m, "torchscript", True)})
        raise UserError(f"architecture {arch.id} cannot be exported to TorchScript: {', '.join(bad)} declare torchscript = False")
    scorer = Scorer(model).eval()
    example = dataset_batch(splits, batch_size) if splits is not None else zero_batch(schema, max(batch_size, schema.num_domains))
    with torch.no_grad(), warnings.catch_warnings():
        # shape-dependent Python branches (e.g. "has sparse fields") are constant for a schema; the check below
        # catches any that are not; torch 2.13 also flags torch.jit itself as deprecated in favour of torch.export
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            traced = torch.jit.trace(scorer, example, check_trace=False)
        except Exception as exc:  # noqa: BLE001 - name the culprit if a component broke tracing
            from mdmt_nas.plugins import describe_component_error

            raise UserError(f"torch.jit.trace failed for architecture {arch.id}: {describe_component_error(exc, model)}") from None
        diff = 0.0
        for inputs in (example, check_batch(schema, len(example[2])), check_batch(schema, 1, seed=1)):
            want, got = scorer(*inputs), traced(*inputs)
            if want.shape != got.shape:
                raise UserError(f"the traced model of {arch.id} returns shape {tuple(got.shape)} instead of {tuple(want.shape)} on a batch of "
                                f"{len(inputs[2])} rows; a component has Python control flow on tensor values")
            diff = max(diff, float((want - got).abs().max()) if want.numel() else 0.0)
    if diff > TOLERANCE:
        raise UserError(f"the traced model of {arch.id} differs from the eager model by {diff:.2e} (> {TOLERANCE:g}) on a batch "
                        "with missing domains; a component has Python control flow on tensor values")
    spec = {
        "format": "mdmt-nas torchscript v1",
        "arch_id": arch.id,
        "inputs": {"sparse": ["int64", ["B", schema.num_sparse]], "dense": ["float32", ["B", schema.num_dense]], "domain": ["int64", ["B"]]},
        "output": ["float32", ["B", schema.num_tasks], "probabilities"],
        "sparse_fields": [f.name for f in schema.sparse], "dense_fields": list(schema.dense),
        "domains": list(schema.domain_names), "tasks": list(schema.tasks),
        "trace_batch_size": len(example[2]), "max_abs_diff_check": diff,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(traced, str(out), _extra_files={"arch.json": arch.to_json(), "schema.json": schema.model_dump_json(indent=2),
                                                        "mdmt_nas.json": json.dumps(spec, indent=2)})
    return ExportInfo(out, arch.id, len(example[2]), diff, spec)
