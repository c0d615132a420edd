"""OpenAI's ``service_tier`` as Loom's scheduling priorities.

``priority`` runs before everything else queued (``Priority.URGENT``), ``default`` and ``auto``
at the ``/v1`` routes' usual priority (``INTERACTIVE``), and ``flex`` behind pipeline steps,
with batch work (``BATCH``): cheaper for the GPU's other users, slower for the caller, as
OpenAI's flex processing is. The answer's ``service_tier`` says the tier it ran at (``auto``
runs at ``default``), as OpenAI's do.
"""

from __future__ import annotations

from .scheduler import Priority

PRIORITIES: dict[str, Priority] = {
    "priority": Priority.URGENT,
    "default": Priority.INTERACTIVE,
    "auto": Priority.INTERACTIVE,
    "flex": Priority.BATCH,
}


def priority_of(tier: str | None) -> Priority:
    """The scheduling priority of a request asking for ``tier`` (None: ``auto``)."""
    return PRIORITIES[tier or "auto"]


def tier_used(tier: str | None) -> str:
    """The tier an answer reports for a request asking for ``tier``."""
    if tier is None or tier == "auto":
        return "default"
    return tier
