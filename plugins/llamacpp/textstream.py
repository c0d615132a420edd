"""Token pieces to streamed text: whole UTF-8 characters only, and stop strings cut out.

A token's piece may end inside a multi-byte character, so bytes are decoded incrementally; and
text that could be the start of a stop string is held back until the next pieces show whether
it is one. What is returned was never part of a stop string, so the text a client sees is
exactly the generation up to (not including) the first stop string, as in llama-cpp-python.

Nothing here imports llama_cpp.
"""

from __future__ import annotations

import codecs


class TextStream:
    def __init__(self, stop: list[str]) -> None:
        self._stop = [s for s in stop if s]
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""
        #: True once a stop string was seen: nothing more is returned.
        self.stopped = False
        #: The stop string the text ended at, once seen.
        self.matched: str | None = None

    def push(self, piece: bytes) -> str:
        """Add one token's bytes; return the text that can be sent now."""
        if self.stopped:
            return ""
        self._held += self._decoder.decode(piece)
        return self._release()

    def finish(self) -> str:
        """The generation ended (not at a stop string): the rest of the text."""
        if self.stopped:
            return ""
        self._held += self._decoder.decode(b"", final=True)
        out = self._release()
        # What was held as a possible stop string's start turned out not to be one.
        out, self._held = out + self._held, ""
        return out

    def _release(self) -> str:
        held = self._held
        if not self._stop:
            self._held = ""
            return held
        hits = [(i, s) for s in self._stop if (i := held.find(s)) >= 0]
        if hits:
            cut, self.matched = min(hits, key=lambda hit: hit[0])
            self.stopped = True
            self._held = ""
            return held[:cut]
        keep = max((_overlap(held, s) for s in self._stop), default=0)
        self._held = held[len(held) - keep :]
        return held[: len(held) - keep]


def _overlap(text: str, stop: str) -> int:
    """Length of the longest end of ``text`` that is a beginning of ``stop``."""
    for n in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0
