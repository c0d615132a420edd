"""Applying the parameter policy table (:mod:`loom.sdk.params`) to a chat or completion request.

The serving model's provider says which optional parameters it honours. One it does not honour
is refused by name (strict, the default) or left out and reported in the ``x-loom-ignored``
header (``compat = "lenient"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import msgspec
from loom.sdk import params
from loom.sdk.errors import UnsupportedParameter
from loom.sdk.types import ChatCompletionRequest, CompletionRequest

from ..models import ModelEntry

IGNORED_HEADER = "x-loom-ignored"


Req = TypeVar("Req", ChatCompletionRequest, CompletionRequest)


def apply_policy(
    req: Req,
    entry: ModelEntry,
    compat: str,
    shown: Callable[[str], str] = lambda name: name,
) -> tuple[Req, list[str]]:
    """The request to send and the (client-facing) names of parameters left out. A completion
    request has only a few of the table's optional parameters (``min_tokens``, ``ignore_eos``);
    the others read as not asked for.

    ``shown`` maps a chat parameter name to the client's name for it (the Responses API's
    ``reasoning.effort`` for ``reasoning_effort``).
    """
    names = params.asked(req, entry.provider_cls.parameters)
    if not names:
        return req, []
    if compat != "lenient":
        raise unsupported(shown(names[0]), entry)
    dropped = set(names)
    for name in names:
        dropped.update(params.COMPANIONS.get(name, ()))
    defaults = {f.name: f.default for f in msgspec.structs.fields(req)}
    return msgspec.structs.replace(req, **{n: defaults[n] for n in sorted(dropped)}), [shown(n) for n in names]


def unsupported(name: str, entry: ModelEntry | None) -> UnsupportedParameter:
    who = f"model '{entry.id}' (provider {entry.spec.provider})" if entry is not None else "any Loom model"
    return UnsupportedParameter(
        f"Unsupported parameter: '{name}' is not honoured by {who}; leave it out, or set "
        'compat = "lenient" in [daemon] to have such parameters ignored (and named in the '
        f"{IGNORED_HEADER} header)",
        param=name,
    )


def ignored_header(names: list[str]) -> dict[str, str]:
    return {IGNORED_HEADER: ", ".join(names)} if names else {}
