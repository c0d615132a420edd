"""Whether a text cut off mid-answer is the start of a JSON document (``max_tokens`` ran out).

:func:`completed` appends what the text lacks, guided by the standard library's own parser: where
``json.loads`` stops at the end of the text (a value, a key, a ``:`` or a closing bracket is
expected), or at a token cut in half (a string, ``tru``, ``1.``, ``-``), the smallest fitting
piece goes on, and the parser is asked again. Only appending, and only stopping when
``json.loads`` accepts the whole, means a text it says yes to is a JSON prefix for certain: the
parser, not this module, decides what is valid.
"""

from __future__ import annotations

import json
from typing import Any

#: What goes on where the parser stopped at the end of the text, by its message.
_AT_END = {
    "Expecting value": ("0",),
    "Expecting property name enclosed in double quotes": ('"":0',),
    "Expecting ':' delimiter": (":0",),
    "Expecting ',' delimiter": ("}", "]"),
}
#: What may finish a token cut in half: a string (plain, after a backslash, inside ``\\uXX``), a
#: number (``-``, ``1.``, ``1e+``) or a literal (``t``, ``nu``, ``fals``).
_TOKEN_ENDS = (
    "0",
    '"',
    'n"',
    '0"',
    '00"',
    '000"',
    '0000"',
    *(word[i:] for word in ("true", "false", "null") for i in range(1, len(word))),
)


def completed(text: str) -> Any:
    """The value ``text`` becomes once completed; ValueError when no continuation of ``text`` is JSON."""
    s = text
    for _ in range(2 * len(text) + 8):  # each round appends at least one character the text lacked
        try:
            return json.loads(s)
        except json.JSONDecodeError as e:
            pieces = _AT_END.get(e.msg, ()) if e.pos >= len(s) else _TOKEN_ENDS
            s = next((s + p for p in pieces if _gets_past(s, p)), "")
            if not s:
                raise ValueError(
                    f"not the start of a JSON document: {e.msg} at char {e.pos} of {text!r:.200}"
                ) from None
    raise ValueError(f"not the start of a JSON document: {text!r:.200}")


def _gets_past(s: str, piece: str) -> bool:
    """``s + piece`` parses, or the parser now stops after the piece, having taken all of it."""
    try:
        json.loads(s + piece)
    except json.JSONDecodeError as e:
        return e.pos >= len(s) + len(piece)
    return True
