"""The host-RAM prompt cache: slot states saved under their tokens, within a byte budget.

The idea of llama-server's ``--cache-ram``. A slot's KV state that is about to be overwritten (its
cells trimmed for another request's prompt) is copied out with ``llama_state_seq_get_data`` and
kept here under the tokens it holds. A request whose prompt shares a longer prefix with a saved
state than with any free slot has that state copied into a slot (``llama_state_seq_set_data``,
which also moves it between sequence ids) and evaluates only the rest.

The cache holds at most ``budget`` bytes (``options.cache_ram_mib``; the provider reports the
whole budget as memory it holds, so the scheduler's ledger counts it from the load on) and drops
the least recently used states to make room. A paused sequence's state (``options.preempt``: its
slot went to a request of a higher priority) is held here too, pinned: never dropped until the
sequence resumes and :meth:`PromptCache.release` makes it an ordinary saved state. Only the batch loop's thread touches it, except
:meth:`PromptCache.stats`, which reads counters.

A state is saved whole: llama.cpp copies a sequence, not a range of it. Restoring one and trimming
it to the shared prefix is how a prefix of it is used. A saved state whose tokens begin another
one's is redundant and dropped; one that a saved state already begins is not saved again.

Imported from ``load`` on (it imports llama_cpp).
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass, field

import llama_cpp

#: A state worth keeping: fewer tokens cost less to evaluate than to copy and look up.
MIN_SAVE_TOKENS = 64
#: Restore a saved state only when it saves evaluating at least this many more prompt tokens than
#: the best free slot does.
MIN_RESTORE_GAIN = 16


@dataclass(eq=False)
class Saved:
    """One saved slot state: the tokens its cells hold (positions 0..n-1) and the state's bytes."""

    tokens: list[int]
    #: ``llama_state_seq_get_data``'s output (a ctypes array, or one over a bytearray read from disk).
    state: ctypes.Array
    #: The named prefix (a request's ``prompt_cache_key``) it was saved or loaded for, if any.
    name: str | None = None
    last_used: float = field(default_factory=time.monotonic)
    #: A paused sequence's state: kept whatever the budget asks until released.
    pinned: bool = False

    @property
    def nbytes(self) -> int:
        return ctypes.sizeof(self.state) + 8 * len(self.tokens)  # the token list: a pointer each


@dataclass
class CacheStats:
    """Counters of one model's prompt cache (cumulative since load, except ``bytes``/``entries``)."""

    budget: int
    bytes: int = 0
    entries: int = 0
    saves: int = 0
    restores: int = 0
    evictions: int = 0
    evicted_bytes: int = 0
    #: States not kept because one state alone was larger than the budget.
    too_large: int = 0
    #: States of paused sequences held (pinned) now.
    held: int = 0


class PromptCache:
    """Saved states, least recently used dropped first once ``budget`` bytes are held."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.entries: list[Saved] = []
        self._stats = CacheStats(budget=budget)

    @property
    def used(self) -> int:
        return self._stats.bytes

    def stats(self) -> CacheStats:
        s = self._stats
        held = sum(1 for e in list(self.entries) if e.pinned)
        return CacheStats(**{**s.__dict__, "entries": len(self.entries), "held": held})

    def best(self, tokens: list[int]) -> tuple[Saved | None, int]:
        """The saved state sharing the longest prefix with ``tokens``, and that prefix's length."""
        best, best_n = None, 0
        for entry in self.entries:
            n = common_prefix(entry.tokens, tokens)
            if n > best_n:
                best, best_n = entry, n
        return best, best_n

    def covers(self, tokens: list[int]) -> Saved | None:
        """A saved state whose tokens begin with all of ``tokens`` (saving them again adds nothing)."""
        n = len(tokens)
        for entry in self.entries:
            if len(entry.tokens) >= n and entry.tokens[:n] == tokens:
                return entry
        return None

    def touch(self, entry: Saved) -> None:
        entry.last_used = time.monotonic()

    def add(self, entry: Saved) -> bool:
        """Keep ``entry``, dropping states it makes redundant, then the least recently used ones
        until it fits (never a pinned one). False (and nothing dropped) when it does not fit
        beside the pinned states."""
        size = entry.nbytes
        if size > self.budget:
            self._stats.too_large += 1
            return False
        if size + sum(e.nbytes for e in self.entries if e.pinned) > self.budget:
            return False
        n = len(entry.tokens)
        for old in [
            e for e in self.entries if not e.pinned and len(e.tokens) <= n and entry.tokens[: len(e.tokens)] == e.tokens
        ]:
            if entry.name is None:
                entry.name = old.name  # a longer state of the same named prefix keeps its name
            self._drop(old)
        while self._stats.bytes + size > self.budget:
            victim = min((e for e in self.entries if not e.pinned), key=lambda e: e.last_used)
            self._drop(victim)
            self._stats.evictions += 1
            self._stats.evicted_bytes += victim.nbytes
        self.entries.append(entry)
        self._stats.bytes += size
        self._stats.saves += 1
        return True

    def _drop(self, entry: Saved) -> None:
        self.entries.remove(entry)
        self._stats.bytes -= entry.nbytes

    def clear(self) -> None:
        self.entries.clear()
        self._stats.bytes = 0

    # --- llama.cpp ------------------------------------------------------------------------------

    def save(self, ctx, seq_id: int, tokens: list[int], name: str | None = None) -> Saved | None:
        """Copy sequence ``seq_id``'s state (whose cells hold ``tokens``) into the cache; the entry,
        or None when it was not kept (over the budget, or llama.cpp could not copy it)."""
        covered = self.covers(tokens)
        if covered is not None:
            self.touch(covered)
            return covered
        state = read_state(ctx, seq_id)
        if state is None:
            return None
        entry = Saved(list(tokens), state, name)
        return entry if self.add(entry) else None

    def hold(self, ctx, seq_id: int, tokens: list[int]) -> Saved | None:
        """Copy the state of sequence ``seq_id`` (a sequence being paused; its cells hold
        ``tokens``) in, pinned; None when it does not fit beside the other pinned states (or
        llama.cpp could not copy it): the sequence is then not paused."""
        state = read_state(ctx, seq_id)
        if state is None:
            return None
        entry = Saved(list(tokens), state, pinned=True)
        return entry if self.add(entry) else None

    def release(self, entry: Saved) -> None:
        """A held state's sequence resumed (or ended): the state stays as an ordinary saved one."""
        entry.pinned = False
        self.touch(entry)

    def restore(self, ctx, entry: Saved, seq_id: int) -> bool:
        """Put ``entry``'s state into sequence ``seq_id`` (whatever it held is dropped)."""
        ok = write_state(ctx, entry.state, seq_id)
        if ok:
            self.touch(entry)
            self._stats.restores += 1
        return ok


def read_state(ctx, seq_id: int) -> ctypes.Array | None:
    """Sequence ``seq_id``'s KV state as bytes (``llama_state_seq_get_data``); None if it failed."""
    size = llama_cpp.llama_state_seq_get_size(ctx, seq_id)
    if size <= 0:
        return None
    buffer = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, seq_id)
    if written != size:
        return None
    return buffer


def write_state(ctx, state: ctypes.Array, seq_id: int) -> bool:
    """Load a state read by :func:`read_state` into sequence ``seq_id``."""
    size = ctypes.sizeof(state)
    return llama_cpp.llama_state_seq_set_data(ctx, state, size, seq_id) == size


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the common prefix of two token lists (list slices compare in C: quick for the
    thousands of tokens of a long prompt)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo
