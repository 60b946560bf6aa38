"""Export a trained architecture for serving: a `torch.export` program (.pt2) and ONNX, schema bundled.

    program = torch.export.load("model.pt2").module()        # torch only, no mdmt_nas
    probs = program(sparse, dense, domain)                    # [B, T]

    session = onnxruntime.InferenceSession("model.onnx")      # onnxruntime only
    probs, = session.run(None, {"sparse": s, "dense": d, "domain": dom})

Inputs: sparse int64 [B, F_sparse] (encoded ids, 0 = unknown), dense float32
[B, F_dense] (normalised), domain int64 [B] in [0, D); output: probabilities
float32 [B, T], each row scored by its own domain's heads. B is dynamic, and
any mix of domains works (a batch may miss some). A sparse id outside its
vocabulary scores as the unknown id 0; a row whose domain id is outside
[0, D) gets NaN probabilities instead of an index error.

The model is traced under static routing (`mdmt_nas.routing.static_routing`):
every domain branch runs on all rows and each row keeps its own domain's
result, so the graph has no data-dependent shapes. Before anything is written,
the program is checked against the eager model on batches of other sizes with
domains missing (max abs difference <= 1e-5).

Bundled in each file (the `serving.json` entry: a .pt2 extra file, ONNX
metadata_props "mdmt_nas.serving", a TorchScript _extra_files entry): the
input/output description, the data schema and, when the data was encoded from
a raw table, the encoding (vocabularies, dense mean/std, domain and task
names) that `mdmt_nas.serving.pyfunc_model.RawEncoder` applies to raw rows.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mdmt_nas.arch import Architecture
from mdmt_nas.data.schema import Schema
from mdmt_nas.errors import ConfigError, UserError
from mdmt_nas.files import atomic_path, write_text

TOLERANCE = 1e-5
FORMATS = ("pt2", "onnx", "torchscript")
SUFFIX = {"pt2": ".pt2", "onnx": ".onnx", "torchscript": ".pt"}
SERVING_FORMAT = "mdmt-nas serving v1"
ONNX_METADATA_KEY = "mdmt_nas.serving"
PT2_EXTRA_FILE = "serving.json"
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class Scorer(nn.Module):
    """The model with a sigmoid and input guards: (sparse, dense, domain) -> probabilities [B, T]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        schema: Schema = model.schema
        self.num_domains = schema.num_domains
        self.register_buffer(
            "vocab_sizes", torch.tensor([f.vocab_size for f in schema.sparse], dtype=torch.long), persistent=False
        )

    def forward(self, sparse: torch.Tensor, dense: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        sparse = torch.where((sparse >= 0) & (sparse < self.vocab_sizes), sparse, torch.zeros_like(sparse))
        known = (domain >= 0) & (domain < self.num_domains)
        probs = torch.sigmoid(self.model(sparse, dense, domain.clamp(0, self.num_domains - 1)))
        return torch.where(known.unsqueeze(1), probs, torch.full_like(probs, float("nan")))


@dataclass
class ExportInfo:
    arch_id: str
    files: dict[str, Path]
    max_abs_diff: dict[str, float]
    spec: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return next(iter(self.files.values()))


# ------------------------------------------------------------------------------ loading
def load_schema(path: str | Path) -> Schema:
    path = Path(path)
    try:
        return Schema.model_validate_json(path.read_text())
    except FileNotFoundError:
        raise UserError(
            f"{path}: no data schema; `mdmt-nas train` and `mdmt-nas search` write schema.json next to weights.pt "
            "(or pass --schema FILE)"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not a valid schema.json ({exc})") from None


def load_encoding(path: str | Path) -> dict[str, Any] | None:
    """encoding.json (written next to weights.pt by train and search), or None if there is none."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None


def load_trained(
    arch_path: str | Path, weights_path: str | Path, schema_path: str | Path | None = None
) -> tuple[nn.Module, Architecture, Schema]:
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
        raise UserError(
            f"{weights_path} does not fit the architecture {arch.id} of {arch_path}: {str(exc).splitlines()[0]}; "
            "use the arch.json/best_arch.json written with these weights"
        ) from None
    model.eval()
    return model, arch, schema


# ------------------------------------------------------------------------------ batches
def zero_batch(schema: Schema, batch_size: int) -> Batch:
    """Zeros shaped by the schema (sparse id 0 = unknown), domains cycling so that every domain is present."""
    return (
        torch.zeros(batch_size, schema.num_sparse, dtype=torch.long),
        torch.zeros(batch_size, schema.num_dense),
        torch.arange(batch_size, dtype=torch.long) % schema.num_domains,
    )


def dataset_batch(splits: Any, batch_size: int) -> Batch:
    """The first rows of the valid split, topped up so that every domain appears at least once."""
    b = next(iter(splits.valid.batches(max(batch_size, 1))))
    sparse, dense, domain = b.sparse, b.dense, b.domain
    missing = [d for d in range(splits.schema.num_domains) if not bool((domain == d).any())]
    if missing:
        zs, zd, _ = zero_batch(splits.schema, len(missing))
        sparse, dense = torch.cat([sparse, zs]), torch.cat([dense, zd])
        domain = torch.cat([domain, torch.tensor(missing, dtype=torch.long)])
    return sparse, dense, domain


def check_batch(schema: Schema, trace_size: int, seed: int = 0) -> Batch:
    """A random batch of another size than the trace batch, in which domain 1 (or the last) never occurs."""
    g = torch.Generator().manual_seed(seed)
    n = trace_size + 5
    sparse = (
        torch.stack([torch.randint(0, f.vocab_size, (n,), generator=g) for f in schema.sparse], 1)
        if schema.sparse
        else torch.zeros(n, 0, dtype=torch.long)
    )
    dense = torch.randn(n, schema.num_dense, generator=g)
    D = schema.num_domains
    allowed = [d for d in range(D) if d != min(1, D - 1)] or [0]
    domain = torch.tensor(allowed, dtype=torch.long)[torch.randint(0, len(allowed), (n,), generator=g)]
    return sparse, dense, domain


def check_batches(schema: Schema, example: Batch) -> list[Batch]:
    """The trace batch, a larger one and a single row, both missing a domain."""
    return [example, check_batch(schema, len(example[2])), _one_row(schema)]


def _one_row(schema: Schema) -> Batch:
    s, d, dom = check_batch(schema, 0, seed=1)
    return s[:1], d[:1], dom[:1]


# ------------------------------------------------------------------------------ the spec
def serving_spec(arch: Architecture, schema: Schema, encoding: dict[str, Any] | None) -> dict[str, Any]:
    """What goes in and comes out of an exported model, with the schema and the raw encoding (JSON data)."""
    return {
        "format": SERVING_FORMAT,
        "arch_id": arch.id,
        "arch_name": arch.name,
        "inputs": {
            "sparse": ["int64", ["batch", schema.num_sparse]],
            "dense": ["float32", ["batch", schema.num_dense]],
            "domain": ["int64", ["batch"]],
        },
        "output": ["float32", ["batch", schema.num_tasks], "probabilities, one column per task"],
        "sparse_fields": [f.name for f in schema.sparse],
        "dense_fields": list(schema.dense),
        "domains": list(schema.domain_names),
        "tasks": list(schema.tasks),
        "schema": schema.model_dump(mode="json"),
        "encoding": encoding,
    }


# ------------------------------------------------------------------------------ writing
def write_text_atomic(path: Path, text: str) -> None:
    write_text(path, text)


@contextmanager
def _quiet() -> Iterator[None]:
    """torch.onnx and torch.export print progress and warnings that mean nothing to a user of this command."""
    loggers = [
        logging.getLogger(n)
        for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript", "torch.fx.experimental.symbolic_shapes")
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _blame(exc: BaseException, model: nn.Module, what: str, arch: Architecture) -> UserError:
    from mdmt_nas.plugins import describe_component_error

    first = describe_component_error(exc, model).splitlines()[0][:600]
    return UserError(
        f"{what} failed for architecture {arch.id}: {first}; a component has data-dependent Python control "
        "flow (e.g. int()/float()/.item()/.tolist() of a tensor, or an `if` on tensor values)"
    )


def _dynamic(batch: Any) -> tuple[dict[int, Any], ...]:
    return ({0: batch}, {0: batch}, {0: batch})


def trace_program(scorer: Scorer, example: Batch, arch: Architecture) -> torch.export.ExportedProgram:
    """`torch.export` of the scorer under static routing, with a dynamic batch dimension."""
    from mdmt_nas.routing import static_routing

    batch = torch.export.Dim("batch", min=1)
    try:
        with torch.no_grad(), static_routing(), _quiet():
            return torch.export.export(scorer, example, dynamic_shapes=_dynamic(batch), strict=False)
    except Exception as exc:  # noqa: BLE001 - name the component that broke tracing
        raise _blame(exc, scorer.model, "torch.export", arch) from None


def max_diff(
    scorer: Scorer, run: Callable[[Batch], torch.Tensor], batches: list[Batch], what: str, arch: Architecture
) -> float:
    """Largest |eager - exported| over the check batches (eager = the model's own routing); UserError above TOLERANCE."""
    diff = 0.0
    with torch.no_grad():
        for b in batches:
            want, got = scorer(*b), run(b)
            if tuple(got.shape) != tuple(want.shape):
                raise UserError(
                    f"the {what} of {arch.id} returns shape {tuple(got.shape)} instead of {tuple(want.shape)} on a batch of "
                    f"{len(b[2])} rows; a component has Python control flow on tensor values"
                )
            if want.numel():
                diff = max(diff, float((want - got).abs().max()))
    if not diff <= TOLERANCE:
        raise UserError(
            f"the {what} of {arch.id} differs from the eager model by {diff:.2e} (> {TOLERANCE:g}) on batches with "
            "missing domains; a component has Python control flow on tensor values"
        )
    return diff


def write_pt2(scorer: Scorer, example: Batch, path: Path, spec: dict[str, Any], arch: Architecture) -> float:
    """Trace, check and save a .pt2 program (serving.json and arch.json as extra files); returns the max diff."""
    ep = trace_program(scorer, example, arch)
    module = ep.module()
    diff = max_diff(
        scorer, lambda b: module(*b), check_batches(scorer.model.schema, example), "torch.export program", arch
    )
    with atomic_path(path) as tmp:
        torch.export.save(
            ep, tmp, extra_files={PT2_EXTRA_FILE: json.dumps(spec, indent=2), "arch.json": arch.to_json()}
        )
    return diff


def write_onnx(scorer: Scorer, example: Batch, path: Path, spec: dict[str, Any], arch: Architecture) -> float:
    """ONNX (dynamo exporter) with a dynamic `batch` dimension, checked with onnxruntime when it is installed."""
    from mdmt_nas.routing import static_routing

    try:
        import onnx  # noqa: F401 - the exporter needs onnx and onnxscript
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise UserError(
            f"ONNX export needs the `export` extra ({exc.name} is not installed): pip install 'mdmt-nas[export]', "
            "or pass --format pt2"
        ) from None
    batch = torch.export.Dim("batch", min=1)
    try:
        with torch.no_grad(), static_routing(), _quiet():
            program = torch.onnx.export(
                scorer,
                example,
                dynamo=True,
                input_names=["sparse", "dense", "domain"],
                output_names=["probabilities"],
                dynamic_shapes=_dynamic(batch),
                verbose=False,
            )
    except Exception as exc:  # noqa: BLE001
        raise _blame(exc, scorer.model, "ONNX export", arch) from None
    program.model.metadata_props[ONNX_METADATA_KEY] = json.dumps(spec)
    program.model.metadata_props["mdmt_nas.arch"] = arch.to_json()
    with atomic_path(path) as tmp:
        with _quiet():
            program.save(str(tmp))
        diff = 0.0
        try:
            import onnxruntime
        except ImportError:
            diff = float("nan")  # not checked: onnxruntime is not installed
        else:
            session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])

            def run(b: Batch) -> torch.Tensor:
                feed = {"sparse": b[0].numpy(), "dense": b[1].numpy(), "domain": b[2].numpy()}
                return torch.from_numpy(session.run(None, feed)[0])

            diff = max_diff(scorer, run, check_batches(scorer.model.schema, example), "ONNX model", arch)
    return diff


def write_torchscript(scorer: Scorer, example: Batch, path: Path, spec: dict[str, Any], arch: Architecture) -> float:
    """The deprecated TorchScript format (`torch.jit.trace`), for runtimes that still need it."""
    model = scorer.model
    if not getattr(model, "torchscript", True):
        bad = sorted(
            {type(m).__name__ for m in model.modules() if m is not model and not getattr(m, "torchscript", True)}
        )
        raise UserError(
            f"architecture {arch.id} cannot be exported to TorchScript: {', '.join(bad)} declare torchscript = False; "
            "use --format pt2,onnx"
        )
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            traced = torch.jit.trace(scorer, example, check_trace=False)
        except Exception as exc:  # noqa: BLE001
            raise _blame(exc, model, "torch.jit.trace", arch) from None
        diff = max_diff(scorer, lambda b: traced(*b), check_batches(model.schema, example), "traced model", arch)
        with atomic_path(path) as tmp:
            torch.jit.save(
                traced,
                str(tmp),
                _extra_files={
                    "serving.json": json.dumps(spec, indent=2),
                    "arch.json": arch.to_json(),
                    "schema.json": model.schema.model_dump_json(indent=2),
                },
            )
    return diff


WRITERS = {"pt2": write_pt2, "onnx": write_onnx, "torchscript": write_torchscript}


def parse_formats(text: str) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UserError(
            f"--format {text!r}: unknown format {', '.join(map(repr, bad)) or '(none)'}; use pt2, onnx, torchscript or a "
            "comma-separated list such as pt2,onnx"
        )
    return formats


def export_loaded(
    model: nn.Module,
    arch: Architecture,
    out_dir: str | Path,
    encoding: dict[str, Any] | None = None,
    formats: tuple[str, ...] = ("pt2", "onnx"),
    example: Batch | None = None,
    batch_size: int = 64,
    stem: str = "model",
) -> ExportInfo:
    """Write model.<format> for each format plus serving.json into `out_dir` (each file checked before it is written)."""
    import time

    model.eval()
    bad = sorted({type(m).__name__ for m in model.modules() if m is not model and not getattr(m, "exportable", True)})
    if bad and any(f != "torchscript" for f in formats):
        raise UserError(
            f"architecture {arch.id} cannot be exported with torch.export: {', '.join(bad)} declare exportable = False"
        )
    schema: Schema = model.schema
    scorer = Scorer(model).eval()
    example = example if example is not None else zero_batch(schema, max(batch_size, schema.num_domains, 2))
    spec = serving_spec(arch, schema, encoding)
    out_dir = Path(out_dir)
    info = ExportInfo(arch.id, {}, {}, spec)
    for fmt in formats:
        t0 = time.perf_counter()
        path = out_dir / f"{stem}{SUFFIX[fmt]}"
        info.max_abs_diff[fmt] = WRITERS[fmt](scorer, example, path, spec, arch)
        info.files[fmt] = path
        info.seconds[fmt] = time.perf_counter() - t0
    write_text_atomic(out_dir / "serving.json", json.dumps(spec, indent=2) + "\n")
    info.files["serving"] = out_dir / "serving.json"
    return info


def export_model(
    arch_path: str | Path,
    weights_path: str | Path,
    out_dir: str | Path,
    schema_path: str | Path | None = None,
    formats: tuple[str, ...] = ("pt2", "onnx"),
    batch_size: int = 64,
    splits: Any = None,
    encoding_path: str | Path | None = None,
) -> ExportInfo:
    """Load a trained model (arch + weights + schema.json/encoding.json beside the weights) and export it."""
    model, arch, schema = load_trained(arch_path, weights_path, schema_path)
    encoding = load_encoding(encoding_path or Path(weights_path).parent / "encoding.json")
    if encoding is None and splits is not None and getattr(splits, "encoder", None) is not None:
        encoding = splits.encoder.serving_spec()
    example = dataset_batch(splits, batch_size) if splits is not None else None
    return export_loaded(model, arch, out_dir, encoding, formats, example, batch_size)
