"""Request bodies in the OpenAPI docs (/docs) for routes that decode their own bodies.

The routes read and decode bodies themselves (strictly, with Loom's error shape), so Litestar
sees no ``data`` parameter to document. These helpers put msgspec's JSON schema of each request
Struct into the document's components and point the route's ``requestBody`` at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
from litestar.openapi.spec import OpenAPIMediaType, Operation, Reference, RequestBody, Schema

REF = "#/components/schemas/{name}"


@dataclass
class RawSchema(Schema):
    """A JSON schema written by msgspec, passed through as it is."""

    raw: dict = field(default_factory=dict)

    def to_schema(self) -> dict:
        return self.raw


#: Every Struct a route documents as its body; ``components()`` publishes their schemas.
DOCUMENTED: list[type] = []


def body(struct: type, media_type: str = "application/json") -> type[Operation]:
    """An ``operation_class`` for a route whose body is ``struct``."""
    DOCUMENTED.append(struct)
    ref = Reference(ref=REF.format(name=struct.__name__))

    @dataclass
    class WithBody(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(required=True, content={media_type: OpenAPIMediaType(schema=ref)})

    return WithBody


def add_components(schema) -> None:
    """Put the request Structs' schemas into a built document's components (Litestar fills
    ``components.schemas`` from its own registry when it builds the document, so they go in
    after)."""
    _, defs = msgspec.json.schema_components(DOCUMENTED, ref_template=REF)
    schemas = schema.components.schemas
    for name, raw in defs.items():
        schemas.setdefault(name, RawSchema(raw=raw))
