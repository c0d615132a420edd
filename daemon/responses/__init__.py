"""The Responses API, built on the chat call every chat provider serves: requests are translated
into chat requests (:mod:`.translate`), answers into response objects and stream events
(:mod:`.stream`), and stored responses live in SQLite (:mod:`.store`)."""

from __future__ import annotations

from .store import ResponseStore, Stored

__all__ = ["ResponseStore", "Stored"]
