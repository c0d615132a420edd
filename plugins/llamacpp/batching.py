"""Continuous batching: every generation running on one model decodes in one llama context.

The context holds ``parallel`` sequences (slots), each with its own share of the KV cache
(``n_ctx`` cells: llama.cpp's non-unified cache, as its server gives each slot ``n_ctx`` /
``n_parallel``). One thread, the batch loop, owns the context. Each step it

1. retires the sequences their requests stopped (a stop string, a cancelled client) and starts
   waiting ones in free slots (the most urgent first, then first come, first served:
   :mod:`.preemption`; the slot whose cache shares the longest prefix with the new prompt is
   taken, and only the rest of the prompt is evaluated; when a state saved in the host-RAM prompt
   cache (:mod:`.promptcache`) shares more, it is restored into a free slot instead, and a slot's
   state about to be overwritten is saved there). With every slot taken, a waiting sequence of a
   higher priority than an occupant pauses it (``preempt``): the occupant's state is held in the
   RAM cache and it waits, with its sampler and its last token, until a slot frees and its state
   is copied back; its reader sees nothing but a pause, and its text is what it would have been;
2. builds one ``llama_batch``: the last sampled token of every generating sequence, then as much
   of the starting sequences' prompts as fits in ``n_batch`` (a long prompt is fed over several
   steps while the others keep generating);
3. runs ``llama_decode`` once, and samples each sequence's next token from its own row of
   logits with its own sampler chain (:mod:`.sampler`: seed, grammar, penalties).

So a request joins at the next step after it arrives, and leaves at any token. The request's
own thread waits on its :class:`Sequence` for tokens and turns them into text (:mod:`.textstream`);
the loop does only what needs the context.

Imported from ``load`` on (it imports llama_cpp).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import llama_cpp
from loom.sdk import LoomError, Priority, ProviderError

from . import preemption
from .prefixstore import PrefixStore
from .promptcache import MIN_RESTORE_GAIN, MIN_SAVE_TOKENS, PromptCache, Saved, common_prefix, read_state, write_state
from .sampler import SamplerChain, row_logprobs, suppressed
from .tuning import ThreadTuner

log = logging.getLogger("loom.llamacpp")

#: ``loom.sdk.Priority.INTERACTIVE``: a client's request.
INTERACTIVE = int(Priority.INTERACTIVE)
#: With ``preempt``: prompt tokens of calls less urgent than a client's fed in one step. A step of
#: 128 prompt tokens costs about a quarter of one of 512 (prompt evaluation is linear in tokens at
#: these sizes on a CPU) and evaluates them nearly as fast per token.
BACKGROUND_PROMPT_TOKENS = 128


@dataclass(frozen=True, slots=True)
class Token:
    """One generated token, with its log probabilities when they were asked for."""

    id: int
    logprob: float | None = None
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Finish:
    """The end of a sequence: ``reason`` is "stop" or "length", or ``error`` is set."""

    reason: str
    completion_tokens: int
    error: LoomError | None = None


#: Put on a sequence's queue to wake its reader without a token (a cancellation).
WAKE = object()


class Sequence:
    """One generation: what it asks for, and the queue its request's thread reads."""

    def __init__(
        self,
        tokens: list[int],
        *,
        max_tokens: int,
        chain: SamplerChain,
        stop_ids: frozenset[int] = frozenset(),
        logprobs: int | None = None,
        reuse_prefix: bool = True,
        min_tokens: int = 0,
        ignore_eos: bool = False,
        name: str | None = None,
        preload: Saved | None = None,
        persist: bool = False,
        priority: int = 0,
    ) -> None:
        self.tokens = tokens
        self.max_tokens = max_tokens
        self.chain = chain
        self.stop_ids = stop_ids
        self.logprobs = logprobs
        self.reuse_prefix = reuse_prefix
        #: The end of generation (end tokens, the template's stop tokens) is held off until this many
        #: tokens were generated; with ``ignore_eos`` until ``max_tokens``.
        self.min_tokens = max_tokens if ignore_eos else min_tokens
        #: The prompt's named prefix (``prompt_cache_key``); ``preload``: its state read from disk;
        #: ``persist``: write the prompt's state to disk once it is evaluated.
        self.name, self.preload, self.persist = name, preload, persist
        #: Prompt tokens whose state a cache held (a slot's cells or a restored state): not evaluated.
        self.cached = 0
        #: The call's priority (``loom.sdk.Priority``: lower is more urgent), and the sequences it
        #: paused to take their slot.
        self.priority = priority
        self.preempted = 0
        self.ends: list[int] | None = None  # the tokens held off while min_tokens is not reached
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.stopped = False
        # --- the batch loop's own ---
        self.slot: Slot | None = None
        self.fed = 0  # prompt tokens in the KV cache (or in the batch being decoded)
        self.last = -1  # the token sampled last, decoded at the next step
        self.generated = 0
        self.order = 0  # when it was placed in a slot (prompts are fed in that order)
        self.arrival = 0  # when it was submitted (equals in priority are served in that order)
        #: While paused: its state, held in the RAM cache (None: it had nothing in its cells yet).
        self.paused: Saved | None = None
        self.pauses = 0
        #: The batch step (``Batcher.steps``) that produced its first token; -1 before.
        self.first_step = -1

    def next(self) -> Token | Finish | object:
        """The next event (blocks): a Token, the Finish, or WAKE."""
        return self.events.get()

    def stop(self) -> None:
        """The request is done with it (it saw a stop string, or was cancelled): the loop drops
        it at its next step."""
        self.stopped = True
        self.events.put(WAKE)

    def held(self) -> int:
        """Cells its state fills: what pausing it would copy out (:mod:`.preemption`)."""
        return len(self.slot.cached) if self.slot is not None else 0


@dataclass(eq=False)
class Slot:
    id: int
    #: The tokens whose keys and values the slot's cache cells hold, in position order.
    cached: list[int] = field(default_factory=list)
    seq: Sequence | None = None
    last_used: float = 0.0


class Batcher:
    """The batch loop of one llama context with ``n_slots`` sequences of ``n_ctx_slot`` cells."""

    def __init__(
        self,
        ctx,
        vocab,
        n_vocab: int,
        *,
        n_slots: int,
        n_ctx_slot: int,
        n_batch: int,
        tuner: ThreadTuner | None = None,
        cache: PromptCache | None = None,
        store: PrefixStore | None = None,
        preempt: bool = False,
    ) -> None:
        self.ctx, self.vocab, self.n_vocab = ctx, vocab, n_vocab
        #: Moves the context between two thread counts by measuring both (None: fixed threads).
        self.tuner = tuner
        self.n_ctx_slot, self.n_batch = n_ctx_slot, n_batch
        self.memory = llama_cpp.llama_get_memory(ctx)
        self.slots = [Slot(i) for i in range(n_slots)]
        #: Slot states saved in host RAM (None: options.cache_ram_mib = 0), and named prefixes on disk.
        self.cache, self.store = cache, store
        #: Pause an occupant for a waiting sequence of a higher priority (needs the RAM cache,
        #: which holds the paused states).
        self.preempt = preempt and cache is not None
        #: Sequences paused so far.
        self.preemptions = 0
        self._end_ids: list[int] | None = None
        #: New and paused sequences waiting for a slot (served in :func:`preemption.first`'s order).
        self._pending: list[Sequence] = []
        self._cond = threading.Condition()
        self._closed = False
        self._placed = itertools.count()
        self._arrived = itertools.count()
        #: Decode steps run so far.
        self.steps = 0
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._thread = threading.Thread(target=self._run, name="loom-llama-batch", daemon=True)
        self._thread.start()

    # --- the requests' side ---------------------------------------------------------------------

    def submit(self, seq: Sequence) -> None:
        with self._cond:
            if self._closed:
                raise ProviderError("llamacpp: the model was unloaded")
            seq.arrival = next(self._arrived)
            self._pending.append(seq)
            self._cond.notify()

    def busy(self) -> int:
        """Sequences in slots now."""
        return sum(1 for s in self.slots if s.seq is not None)

    def waiting(self) -> int:
        """Sequences waiting for a free slot."""
        with self._cond:
            return len(self._pending)

    def close(self) -> None:
        """Stop the loop (after its current step) and end every sequence with an error."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        gone = ProviderError("llamacpp: the model was unloaded")
        for slot in self.slots:
            if slot.seq is not None:
                self._finish(slot.seq, "stop", gone)
        for seq in self._pending:
            seq.chain.close()
            seq.events.put(Finish("stop", seq.generated, gone))
        self._pending.clear()
        llama_cpp.llama_batch_free(self._batch)
        if self.cache is not None:
            self.cache.clear()

    # --- the loop -------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._pending and not any(s.seq for s in self.slots):
                    self._cond.wait()
                if self._closed:
                    return
                self._retire()
                self._admit()
            if any(s.seq for s in self.slots):
                self._step()

    def _retire(self) -> None:
        for slot in self.slots:
            if slot.seq is not None and slot.seq.stopped:
                self._finish(slot.seq, "stop")

    def _admit(self) -> None:
        for seq in [s for s in self._pending if s.stopped]:
            self._pending.remove(seq)
            self._unhold(seq)
            seq.chain.close()
        while self._pending:
            first = preemption.first(self._pending)
            assert first is not None, "the pending list is not empty"
            seq = first
            free = [s for s in self.slots if s.seq is None]
            if not free:
                occupant = preemption.victim(seq, [s.seq for s in self.slots if s.seq]) if self.preempt else None
                if occupant is None or not self._pause(occupant, seq):
                    return  # every slot is taken: it waits for one
                seq.preempted += 1
                free = [s for s in self.slots if s.seq is None]
            self._pending.remove(seq)
            if seq.pauses and seq.slot is None and seq.paused is not None:
                self._resume(seq, free)
            else:
                self._place(seq, free)

    def _pause(self, seq: Sequence, newcomer: Sequence) -> bool:
        """Take ``seq`` out of its slot for ``newcomer``: its state is held in the RAM cache and it
        waits with the others, its sampler and its last sampled token kept. False when the cache
        cannot hold its state (it keeps its slot)."""
        slot = seq.slot
        assert slot is not None and self.cache is not None
        held = None
        if slot.cached:
            held = self.cache.hold(self.ctx, slot.id, slot.cached)
            if held is None:
                return False
        else:
            seq.fed = 0  # nothing evaluated yet: it starts over
        slot.seq, seq.slot, seq.paused = None, None, held
        slot.last_used = time.monotonic()
        seq.pauses += 1
        self.preemptions += 1
        self._pending.append(seq)
        log.debug(
            "preempt: paused a priority %d sequence (%d tokens, %d generated) in slot %d for a priority %d one",
            seq.priority,
            len(held.tokens) if held is not None else 0,
            seq.generated,
            slot.id,
            newcomer.priority,
        )
        return True

    def _resume(self, seq: Sequence, free: list[Slot]) -> None:
        """Put a paused ``seq`` back in a free slot with its state: the slot that still holds all
        of it when one does, else the one that would lose least, its state copied in."""
        held = seq.paused
        assert held is not None and self.cache is not None
        n = len(held.tokens)
        holding = [s for s in free if common_prefix(s.cached, held.tokens) == n]
        if holding:
            slot = holding[0]
            llama_cpp.llama_memory_seq_rm(self.memory, slot.id, n, -1)
            del slot.cached[n:]
        else:
            slot = min(free, key=lambda s: (self._lost(s, 0), s.last_used))
            self._save_before_trim(slot, 0)
            if not self._restore(held, slot):
                self._unhold(seq)
                self._finish(seq, "stop", ProviderError("llamacpp: a paused generation could not be resumed"))
                return
            slot.cached = list(held.tokens)
        self._unhold(seq)
        slot.seq, seq.slot = seq, slot
        log.debug("preempt: resumed a priority %d sequence (%d tokens) in slot %d", seq.priority, n, slot.id)

    def _unhold(self, seq: Sequence) -> None:
        """Let the RAM cache drop a paused sequence's state as it drops any saved one."""
        held, seq.paused = seq.paused, None
        if held is not None and self.cache is not None:
            self.cache.release(held)

    def _place(self, seq: Sequence, free: list[Slot]) -> None:
        """Put ``seq`` in a free slot, keeping the longest prefix of its prompt that a slot holds or a
        saved state does. A slot is weighed by the prompt tokens it would spare minus the tokens of
        its state that would be lost (none when the state is short or saved already); a saved
        state that spares more is restored into the free slot that would lose least. A slot's state
        that would be overwritten is saved in the RAM cache first."""
        tokens = seq.tokens
        if not seq.reuse_prefix:
            slot, keep = min(free, key=lambda s: (self._lost(s, 0), s.last_used)), 0
            self._save_before_trim(slot, 0)
        else:
            kept = {s.id: common_prefix(s.cached, tokens) for s in free}
            slot = max(free, key=lambda s: (kept[s.id] - self._lost(s, kept[s.id]), -s.last_used))
            keep = kept[slot.id]
            saved, saved_keep = self._saved_prefix(seq)
            if saved is not None and saved_keep >= keep + MIN_RESTORE_GAIN:
                slot, keep = min(free, key=lambda s: (self._lost(s, 0), s.last_used)), saved_keep
                self._save_before_trim(slot, 0)
                if self._restore(saved, slot):
                    slot.cached = list(saved.tokens)
                else:
                    keep = 0
            else:
                self._save_before_trim(slot, keep)
        keep = min(keep, len(tokens) - 1)  # one token makes the logits
        if not llama_cpp.llama_memory_seq_rm(self.memory, slot.id, keep, -1):
            llama_cpp.llama_memory_seq_rm(self.memory, slot.id, -1, -1)
            keep = 0
        del slot.cached[keep:]
        seq.preload = None
        slot.seq, seq.slot, seq.fed, seq.order, seq.cached = seq, slot, keep, next(self._placed), keep

    def _lost(self, slot: Slot, keep: int) -> int:
        """Tokens of ``slot``'s state that trimming it to ``keep`` cells loses: none when a saved
        state holds it all already, else those past ``keep`` (saved on the way when there are enough
        of them and the cache has room, but the room is taken from other saved states)."""
        cache, tokens = self.cache, slot.cached
        if len(tokens) <= keep or (cache is not None and cache.covers(tokens) is not None):
            return 0
        return len(tokens) - keep

    def _saved_prefix(self, seq: Sequence) -> tuple[Saved | None, int]:
        """The saved state sharing the longest prefix with ``seq``'s prompt (the RAM cache's, or
        the named prefix read from disk for it), and that prefix's length."""
        cache, preload = self.cache, seq.preload
        if cache is not None and preload is not None and not cache.add(preload):
            log.info("prompt cache: the prefix %r read from disk is larger than the RAM budget", preload.name)
        saved, n = cache.best(seq.tokens) if cache is not None else (None, 0)
        if preload is not None:
            n_preload = common_prefix(preload.tokens, seq.tokens)
            if n_preload > n:
                saved, n = preload, n_preload
        return saved, n

    def _save_before_trim(self, slot: Slot, keep: int) -> None:
        """Save ``slot``'s state in the RAM cache when trimming it to ``keep`` cells loses enough."""
        if self.cache is not None and len(slot.cached) - keep >= MIN_SAVE_TOKENS:
            self.cache.save(self.ctx, slot.id, slot.cached)

    def _restore(self, saved: Saved, slot: Slot) -> bool:
        """Copy a saved state into ``slot``'s cells (on failure the slot is left empty)."""
        cache = self.cache
        if (
            cache.restore(self.ctx, saved, slot.id)
            if cache is not None
            else write_state(self.ctx, saved.state, slot.id)
        ):
            return True
        log.warning("prompt cache: llama.cpp could not restore a saved state (%d tokens)", len(saved.tokens))
        llama_cpp.llama_memory_seq_rm(self.memory, slot.id, -1, -1)
        slot.cached.clear()
        return False

    def _step(self) -> None:
        batch, n = self._batch, 0
        rows: list[tuple[Sequence, int]] = []

        def add(token: int, pos: int, slot: int, logits: bool) -> None:
            nonlocal n
            batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, pos, 1
            batch.seq_id[n][0], batch.logits[n] = slot, logits
            n += 1

        running = [s.seq for s in self.slots if s.seq is not None]
        for seq in running:
            if seq.last >= 0:  # generating: its last token goes in
                assert seq.slot is not None
                add(seq.last, len(seq.slot.cached), seq.slot.id, True)
                seq.slot.cached.append(seq.last)
                rows.append((seq, n - 1))
        generating = n
        prompting = sorted((s for s in running if s.last < 0), key=lambda s: (s.priority, s.order))
        room = self._prompt_room(prompting)
        for seq in prompting:
            assert seq.slot is not None
            left = room.get(seq.priority, 0)
            if left <= 0:
                continue
            take = min(self.n_batch - n, len(seq.tokens) - seq.fed, left)
            room[seq.priority] = left - take
            for token in seq.tokens[seq.fed : seq.fed + take]:
                add(token, len(seq.slot.cached), seq.slot.id, False)
                seq.slot.cached.append(token)
            seq.fed += take
            if take and seq.fed == len(seq.tokens):
                batch.logits[n - 1] = True
                rows.append((seq, n - 1))
            if n >= self.n_batch:
                break
        batch.n_tokens = n
        self.steps += 1
        tuner = self.tuner
        if tuner is not None:
            tuner.before_step()
        started = time.perf_counter()
        code = llama_cpp.llama_decode(self.ctx, batch)
        if tuner is not None:
            tuner.after_step(n, n > generating, time.perf_counter() - started)
        if code != 0:
            self._decode_failed(code, {id(s) for s, _ in rows} | {id(s) for s in running if s.last < 0})
            return
        now = time.monotonic()
        for seq, row in rows:
            self._sample(seq, row)
            if seq.slot is not None:
                seq.slot.last_used = now

    def _prompt_room(self, prompting: list[Sequence]) -> dict[int, int]:
        """Prompt tokens this step takes, by priority. Prompts are fed the most urgent first, then
        in the order they were placed. With ``preempt``, a request's time to first token is what
        it is for: a step that feeds a more urgent prompt feeds no less urgent one (a prompt
        costs the step time in proportion), and less urgent prompts than a client's go at most
        :data:`BACKGROUND_PROMPT_TOKENS` a step, so a request that arrives meanwhile waits for a
        short step, not a long prefill."""
        if not self.preempt:
            return {seq.priority: self.n_batch for seq in prompting}
        top = prompting[0].priority if prompting else 0
        return {
            seq.priority: self.n_batch if seq.priority <= INTERACTIVE else BACKGROUND_PROMPT_TOKENS
            for seq in prompting
            if seq.priority == top
        }

    def _sample(self, seq: Sequence, row: int) -> None:
        if seq.generated == 0 and seq.persist:
            self._persist(seq)
        if seq.generated < seq.min_tokens:
            with suppressed(self.ctx, row, self.n_vocab, self._ends(seq)):
                token = seq.chain.sample(self.ctx, row)
        else:
            token = seq.chain.sample(self.ctx, row)
        if llama_cpp.llama_vocab_is_eog(self.vocab, token) or token in seq.stop_ids:
            self._finish(seq, "stop")
            return
        if seq.generated == 0:
            seq.first_step = self.steps
        seq.generated += 1
        if seq.logprobs is None:
            seq.events.put(Token(token))
        else:
            logprob, top = row_logprobs(self.ctx, row, self.n_vocab, token, seq.logprobs)
            seq.events.put(Token(token, logprob, top))
        if seq.generated >= seq.max_tokens:
            self._finish(seq, "length")
        else:
            seq.last = token

    def _ends(self, seq: Sequence) -> list[int]:
        """The tokens that would end ``seq``: the vocabulary's end-of-generation tokens (found
        once) and the template's stop tokens."""
        if seq.ends is None:
            if self._end_ids is None:
                self._end_ids = [t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self.vocab, t)]
            seq.ends = sorted(set(self._end_ids) | seq.stop_ids)
        return seq.ends

    def _persist(self, seq: Sequence) -> None:
        """``seq``'s prompt is evaluated: keep its state under its name, in RAM and on disk."""
        seq.persist = False
        slot, store = seq.slot, self.store
        if slot is None or store is None or seq.name is None:
            return
        state = read_state(self.ctx, slot.id)
        if state is None:
            return
        if self.cache is not None:
            self.cache.add(Saved(list(seq.tokens), state, seq.name))
        store.write_later(seq.name, seq.tokens, memoryview(state).cast("B"))

    def _finish(self, seq: Sequence, reason: str, error: LoomError | None = None) -> None:
        slot = seq.slot
        if slot is not None:
            slot.seq, seq.slot = None, None
            slot.last_used = time.monotonic()
        seq.chain.close()
        seq.events.put(Finish(reason, seq.generated, error))

    def _decode_failed(self, code: int, involved: set[int]) -> None:
        """llama_decode refused the batch: its sequences fail, and their slots start empty."""
        error = ProviderError(f"llamacpp: llama_decode failed with code {code}")
        for slot in self.slots:
            seq = slot.seq
            if seq is not None and id(seq) in involved:
                llama_cpp.llama_memory_seq_rm(self.memory, slot.id, -1, -1)
                slot.cached.clear()
                self._finish(seq, "stop", error)
