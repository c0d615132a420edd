"""The API key a request presents: ``Authorization: Bearer <key>`` or ``X-API-Key``. The API's
key guards and the web UI's sessions both read it."""

from __future__ import annotations

from litestar.connection import ASGIConnection


def presented_key(connection: ASGIConnection) -> str | None:
    header = connection.headers.get("authorization")
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return connection.headers.get("x-api-key")
