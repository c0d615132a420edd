"""Validate what Loom answers against OpenAI's published OpenAPI document.

The document (``openapi.yaml``, OpenAI's own description of its API; its source, commit, licence
and checksum are in ``tests/openai-openapi.md``) is read once per process.
``validate(instance, "CreateChatCompletionResponse")`` checks a decoded JSON body against one of
its component schemas with ``jsonschema`` (JSON Schema 2020-12, which OpenAPI 3.1 schemas are);
every ``$ref`` resolves inside the document. A failure raises AssertionError listing each problem
with its JSON path, so a test names the field that is off.

Tests that validate take the ``openai_document`` fixture (``tests/conftest.py``), or call
``require_document()``: without the document they skip, and under ``CI=true`` they fail
(``tests/asset_support.py``). A document whose checksum is not the pinned one is an error, not a
skip: the tests are written against that version.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

from tests.asset_support import missing

ROOT = Path(__file__).resolve().parent.parent
#: The pinned version's SHA-256 (openai/openai-openapi at the commit ``tests/openai-openapi.md`` names).
SHA256 = "db5d7478feae10b4d331834c60d9765a8aa042e38419f9b1694288c11aa8ebc8"
#: Where the document is looked for, first found wins: ``LOOM_OPENAI_OPENAPI``, a copy at
#: ``tests/openai-openapi.yaml``, the shared folder next to the repository.
CANDIDATES = [
    Path(p)
    for p in (
        os.environ.get("LOOM_OPENAI_OPENAPI", ""),
        str(ROOT / "tests" / "openai-openapi.yaml"),
        str(ROOT.parent / "shared" / "openai-openapi" / "openapi.yaml"),
    )
    if p
]
BASE_URI = "urn:openai-openapi"


def document_path() -> Path | None:
    return next((p for p in CANDIDATES if p.is_file()), None)


def require_document() -> Path:
    """The document's path; skips the calling test when it is not on this machine (fails under ``CI=true``)."""
    path = document_path()
    if path is None:
        missing(f"OpenAI's openapi.yaml (looked at {', '.join(map(str, CANDIDATES))}; see tests/openai-openapi.md)")
    _check_pin(path)
    return path


@functools.cache
def _check_pin(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == SHA256, (
        f"{path} is not the pinned OpenAI openapi.yaml (sha256 {digest}, pinned {SHA256}; see tests/openai-openapi.md)"
    )


@functools.cache
def _document() -> dict[str, Any]:
    import yaml

    path = require_document()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open() as f:
        return _nullable(yaml.load(f, Loader=loader))


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` (which the document still uses in places) as JSON Schema:
    ``null`` becomes one more accepted value. JSON Schema itself ignores the keyword, so without
    this every ``null`` the document allows would be reported as an error."""
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: _nullable(v) for k, v in node.items()}
    if node.pop("nullable", False) is True:
        if "enum" in node and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        if isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        elif "type" not in node:
            node = {"anyOf": [node, {"type": "null"}]}
    return node


@functools.cache
def _validator(name: str):
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    doc = _document()
    if name not in doc["components"]["schemas"]:
        raise KeyError(f"no component schema {name!r} in OpenAI's openapi.yaml")
    registry = Registry().with_resource(BASE_URI, Resource.from_contents(doc, default_specification=DRAFT202012))
    schema = {"$ref": f"{BASE_URI}#/components/schemas/{name}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def schema_names() -> list[str]:
    return sorted(_document()["components"]["schemas"])


def errors(instance: Any, name: str) -> list[str]:
    """Each way ``instance`` fails the component schema ``name``, as ``path: message``."""
    found = []
    for error in _validator(name).iter_errors(instance):
        # oneOf/anyOf failures carry the per-branch reasons; the closest branch says most.
        best = (
            min(error.context, key=lambda e: len(list(e.relative_path)) * -1, default=None) if error.context else None
        )
        where = error.json_path
        message = (
            error.message if best is None else f"{error.message[:200]} (closest: {best.json_path}: {best.message})"
        )
        found.append(f"{where}: {message}")
    return found


def validate(instance: Any, name: str) -> None:
    """Raise AssertionError naming every problem when ``instance`` does not fit schema ``name``."""
    problems = errors(instance, name)
    if problems:
        raise AssertionError(f"not a valid {name}:\n  " + "\n  ".join(problems[:20]))


def validate_event(event: dict[str, Any]) -> None:
    """A Responses stream event, checked against the schema of its own ``type``.

    ``ResponseStreamEvent`` is a oneOf of ~50 schemas; matching the event to the one whose
    ``type`` enum holds its type gives an error about that schema instead of about all of them.
    """
    name = event_schema(event.get("type", ""))
    validate(event, name)


@functools.cache
def _event_schemas() -> dict[str, str]:
    doc = _document()
    schemas = doc["components"]["schemas"]
    out: dict[str, str] = {}
    for branch in schemas["ResponseStreamEvent"].get("anyOf", schemas["ResponseStreamEvent"].get("oneOf", [])):
        name = branch["$ref"].rsplit("/", 1)[1]
        for value in schemas[name].get("properties", {}).get("type", {}).get("enum", []):
            out[value] = name
    return out


def event_schema(event_type: str) -> str:
    try:
        return _event_schemas()[event_type]
    except KeyError:
        raise AssertionError(f"{event_type!r} is not a Responses stream event type in OpenAI's openapi.yaml") from None
