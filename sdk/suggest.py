"""Nearest names for a misspelt one: model ids, parameters, config keys ("did you mean ...?").

In the SDK because the daemon, plugins and the client all name things a person types."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def close_to(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The choices nearest ``name``, best first: a case-insensitive match, then names that start
    with it or that it starts with (``smollm2`` → ``smollm2-135m``), then difflib's."""
    options = list(dict.fromkeys(choices))
    lowered = {c.lower(): c for c in options}
    key = name.lower()
    found: list[str] = []
    if key in lowered:
        found.append(lowered[key])
    squashed = key.replace("_", "").replace("-", "")
    found += [c for c in options if c.lower().replace("_", "").replace("-", "") == squashed]
    found = [c for c in found if c != name]
    if found:  # the same name but for case or separators: that is the one meant
        return list(dict.fromkeys(found))[:n]
    if len(key) >= 3:
        found += [c for c in options if c.lower().startswith(key) or key.startswith(c.lower())]
    found += [lowered[c] for c in difflib.get_close_matches(key, list(lowered), n=n, cutoff=0.6)]
    return list(dict.fromkeys(c for c in found if c != name))[:n]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` (or ``'x' or 'y'``), or ``""`` when nothing is close."""
    near = close_to(name, choices)
    if not near:
        return ""
    return "; did you mean " + " or ".join(f"'{c}'" for c in near) + "?"
