"""A validator for the subset of OpenAPI 3.0 that graph-schemas.json uses ($ref, allOf, anyOf,
type with `nullable`, properties, items, enum, pattern, required, minimum/maximum), so every body
the sandbox emits is checked against Graph's own schemas without a jsonschema dependency."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

SCHEMAS_PATH = Path(__file__).parent.parent / "fixtures" / "graph" / "graph-schemas.json"
_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "integer": int,
    "number": (int, float),
}


@cache
def _schemas() -> dict[str, Any]:
    return json.loads(SCHEMAS_PATH.read_text())["components"]["schemas"]


def _resolve(ref: str) -> dict[str, Any]:
    return _schemas()[ref.rsplit("/", 1)[-1]]


def errors_of(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    if value is None:
        branches = schema.get("anyOf", [])
        if (
            schema.get("nullable")
            or schema.get("x-csdl-nullable")
            or any(branch.get("nullable") for branch in branches)
        ):
            return []
        return [f"{path}: null not allowed"]
    if "$ref" in schema:
        found = errors_of(value, _resolve(schema["$ref"]), path)
        if found:
            return found
    problems: list[str] = []
    for sub in schema.get("allOf", []):
        problems += errors_of(value, sub, path)
    if "anyOf" in schema and all(errors_of(value, sub, path) for sub in schema["anyOf"]):
        problems.append(f"{path}: matches no anyOf branch")
    kind = schema.get("type")
    if kind is not None:
        expected = _TYPES[kind]
        if not isinstance(value, expected) or (
            kind in ("integer", "number") and isinstance(value, bool)
        ):
            return [*problems, f"{path}: expected {kind}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} not in enum")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        problems.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{path}: below minimum")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{path}: above maximum")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{path}: missing {name}")
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                problems += errors_of(value[name], sub, f"{path}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems += errors_of(item, schema["items"], f"{path}[{index}]")
    return problems


def assert_valid(value: Any, schema_name: str) -> None:
    problems = errors_of(value, _schemas()[schema_name])
    assert not problems, "\n".join(problems)


def assert_event(value: Any) -> None:
    assert_valid(value, "microsoft.graph.event")


def assert_graph_error(value: Any) -> None:
    # The schema spells the inner object `innererror`; Graph sends `innerError` (§0).
    assert_valid(value, "odata.error")
    inner = value["error"]["innerError"]
    assert set(inner) >= {"date", "request-id"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", inner["date"])
