"""What `mdmt-nas plugins show` tells of one component: its class attributes, parameter table and params' JSON schema."""

from __future__ import annotations

import json

#: class attributes worth showing, per kind (what the model builder reads besides Params)
KIND_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "expert": ("torchscript",),
    "gate": ("sparse", "per_head_input", "torchscript"),
    "fusion": ("level", "uses_other_members", "torchscript"),
    "adapter": ("site", "torchscript"),
    "tower": ("torchscript",),
    "balancer": (),
    "searcher": ("budget_unit", "default_budget", "multi_objective"),
    "dataset": (),
}


def _type_name(annotation) -> str:
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return type(args[0]).__name__ if args else "literal"
    if origin in (typing.Union, __import__("types").UnionType):
        return " | ".join("None" if a is type(None) else _type_name(a) for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is not None:
        inner = ", ".join(_type_name(a) for a in args)
        return (
            f"{getattr(origin, '__name__', str(origin))}[{inner}]"
            if inner
            else getattr(origin, "__name__", str(origin))
        )
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def _bounds(field) -> str:
    import typing

    import annotated_types as at

    parts = []
    ann = field.annotation
    literal = [a for a in (ann, *typing.get_args(ann)) if typing.get_origin(a) is typing.Literal]
    if literal:
        parts.append("one of " + ", ".join(map(str, typing.get_args(literal[0]))))
    for m in field.metadata:
        for cls, sym, attr in (
            (at.Ge, ">=", "ge"),
            (at.Gt, ">", "gt"),
            (at.Le, "<=", "le"),
            (at.Lt, "<", "lt"),
            (at.MinLen, "length >=", "min_length"),
            (at.MaxLen, "length <=", "max_length"),
        ):
            if isinstance(m, cls):
                parts.append(f"{sym} {getattr(m, attr)}")
    return ", ".join(parts)


def param_rows(params_cls) -> list[dict[str, str]]:
    """name, type, default, bounds, description of each field of a pydantic Params model."""
    from pydantic_core import PydanticUndefined

    rows = []
    for name, f in getattr(params_cls, "model_fields", {}).items():
        default = f.get_default(call_default_factory=True)
        rows.append(
            {
                "name": name,
                "type": _type_name(f.annotation),
                "default": "(required)" if default is PydanticUndefined else json.dumps(default, default=_jsonable),
                "bounds": _bounds(f),
                "description": f.description or "",
            }
        )
    return rows


def _jsonable(obj):
    return obj.model_dump(mode="json") if hasattr(obj, "model_dump") else str(obj)


def component_schema(entry) -> dict:
    """The JSON schema of a component's params, titled and described by the component (draft 2020-12)."""
    import inspect

    params = getattr(entry.obj, "Params", None)
    schema = params.model_json_schema() if params is not None else {"type": "object", "properties": {}}
    for row in param_rows(params):  # pydantic leaves out defaults made by a default_factory
        prop = schema.get("properties", {}).get(row["name"])
        if prop is not None and "default" not in prop and row["default"] != "(required)":
            prop["default"] = json.loads(row["default"])
    doc = (
        (inspect.getdoc(entry.obj) or "").split("\n\n")[0].replace("\n", " ").strip()
        if isinstance(entry.obj, type)
        else ""
    )
    out = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": f"{entry.kind} {entry.name} params",
    }
    if doc:
        out["description"] = doc
    out["x-mdmt-nas"] = {
        "kind": entry.kind,
        "name": entry.name,
        "plugin": entry.plugin,
        "distribution": entry.dist,
        "version": entry.version,
        "class": qualname(entry.obj),
    }
    return out


def qualname(obj) -> str:
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    return str(getattr(obj, "source", "") or obj)
