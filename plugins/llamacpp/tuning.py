"""Keep llama.cpp on the quicker of two thread counts while it runs.

ggml's threads meet at a barrier after every operation of a decode step and spin there. On a
quiet machine every physical core is the quickest choice (two threads streamed 105 tokens/s where
one streamed 84, on two cores). But when the OS takes one of those threads off its core because
the machine is busy with other work (another model on the CPU, other tenants), every other thread
waits at the next barrier, and a step takes many times as long: on the same two cores, taken by
other work, two threads streamed 11 tokens/s where one streamed 75.

So when Loom chose the thread count itself, the batch loop keeps trying it against half as many:
every ``every`` steps it runs a short trial, alternating the two counts, and keeps
the one whose steps were quicker. Only steps of one shape are compared (decode steps with the
same number of tokens, no prompt), as a step's cost depends on how many tokens it holds. A
model whose ``threads`` (or ``n_threads``) is set keeps exactly that.

Nothing here imports llama_cpp: the caller passes the function that sets the threads.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

Threads = tuple[int, int]  # (n_threads, n_threads_batch)


class ThreadTuner:
    def __init__(
        self,
        apply: Callable[[int, int], None],
        primary: Threads,
        *,
        first: int = 16,
        every: int = 256,
        trial: int = 16,
        margin: float = 0.1,
    ) -> None:
        self._apply = apply
        self.candidates = (primary, (max(1, primary[0] // 2), max(1, primary[1] // 2)))
        #: The thread counts in use outside trials.
        self.current = primary
        self._every, self._trial, self._margin = every, trial, margin
        self._until_trial = first
        self._samples: dict[Threads, list[float]] | None = None
        self._shape: int | None = None
        self._trial_steps = 0
        self._running = primary
        #: Trials run and switches made, for tests and the bench.
        self.trials = 0
        self.switches = 0

    def before_step(self) -> None:
        """Set the thread counts for the step about to run."""
        if self._samples is None:
            self._until_trial -= 1
            if self._until_trial > 0:
                return
            self._samples = {c: [] for c in self.candidates}
            self._shape, self._trial_steps = None, 0
        # The count with fewer comparable steps so far goes next: steps that do not count (a
        # prompt, another shape) do not tip the alternation towards one count.
        samples = self._samples
        self._use(min(self.candidates, key=lambda c: len(samples[c])))
        self._trial_steps += 1

    def after_step(self, tokens: int, prompt: bool, seconds: float) -> None:
        """Record how long the step took (``tokens`` in the batch, ``prompt`` when it held prompt
        tokens); at the end of a trial, keep the quicker count."""
        samples = self._samples
        if samples is None:
            return
        if not prompt:
            if self._shape is None:
                self._shape = tokens
            if tokens == self._shape:
                samples[self._running].append(seconds)
        half = self._trial // 2
        if all(len(s) >= half for s in samples.values()):
            primary, fallback = (statistics.median(samples[c]) for c in self.candidates)
            best = self.candidates[1] if fallback < primary * (1 - self._margin) else self.candidates[0]
            self._end(best)
        elif self._trial_steps >= 4 * self._trial:  # the batch kept changing shape: try later
            self._end(self.current)

    def _end(self, best: Threads) -> None:
        self.trials += 1
        if best != self.current:
            self.switches += 1
        self.current = best
        self._samples = None
        self._until_trial = self._every
        self._use(best)

    def _use(self, threads: Threads) -> None:
        if threads != self._running:
            self._apply(*threads)
            self._running = threads
