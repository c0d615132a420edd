"""What the text routes (``/v1/chat/completions``, ``/v1/completions``) use, as one dependency.

Litestar resolves the dependencies of a handler that asks for more than one concurrently, in an
anyio task group with a task per dependency; for services that are constants that is pure
overhead (about a tenth of the gateway's CPU per request on the mock, before this). So the hot
routes ask for this one object and the services stay named fields on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .chat.intake import ChatIntake
from .http.body import BodyReader
from .routing import ModelRouter
from .scheduler import Scheduler


@dataclass(frozen=True, eq=False)
class TextServices:
    bodies: BodyReader
    intake: ChatIntake
    router: ModelRouter
    scheduler: Scheduler
