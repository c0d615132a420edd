"""The thread tuner of the llamacpp batch loop (loom.plugins.llamacpp.tuning), with step times
given by the test: it keeps the machine's thread count while that is quicker, moves to half as
many when those steps are quicker (a busy machine), and back again when the machine is quiet."""

from __future__ import annotations

from loom.plugins.llamacpp.tuning import ThreadTuner


class Machine:
    """Steps whose cost depends on the threads in use and on whether other work is running."""

    def __init__(self) -> None:
        self.applied: list[tuple[int, int]] = []
        self.threads = (4, 4)
        self.busy = False

    def apply(self, decode: int, batch: int) -> None:
        self.threads = (decode, batch)
        self.applied.append(self.threads)

    def cost(self, tokens: int) -> float:
        per_token = {False: {4: 0.005, 2: 0.008}, True: {4: 0.050, 2: 0.009}}[self.busy][self.threads[0]]
        return per_token * tokens


def run(tuner: ThreadTuner, machine: Machine, steps: int, tokens: int = 4, prompt_every: int = 0) -> None:
    for i in range(steps):
        tuner.before_step()
        prompt = bool(prompt_every) and i % prompt_every == 0
        n = tokens + (100 if prompt else 0)
        tuner.after_step(n, prompt, machine.cost(n))


def test_a_quiet_machine_keeps_every_core():
    machine = Machine()
    tuner = ThreadTuner(machine.apply, (4, 4), first=8, every=64, trial=8)
    run(tuner, machine, 300)
    assert tuner.trials >= 3 and tuner.switches == 0
    assert tuner.current == (4, 4) and machine.threads == (4, 4)
    assert (2, 2) in machine.applied  # it did try half


def test_a_busy_machine_moves_to_half_and_back_when_it_quietens():
    machine = Machine()
    machine.busy = True
    tuner = ThreadTuner(machine.apply, (4, 4), first=8, every=64, trial=8)
    run(tuner, machine, 40)
    assert tuner.current == (2, 2) and machine.threads == (2, 2)
    machine.busy = False
    run(tuner, machine, 200)
    assert tuner.current == (4, 4) and machine.threads == (4, 4)
    assert tuner.switches == 2


def test_only_steps_of_one_shape_are_compared():
    machine = Machine()
    machine.busy = True
    tuner = ThreadTuner(machine.apply, (4, 4), first=1, every=1000, trial=8)
    # Every other step carries a prompt (and is far longer): those do not count, the trial ends
    # on the decode steps alone and still sees that half the threads are quicker.
    run(tuner, machine, 60, prompt_every=2)
    assert tuner.trials == 1 and tuner.current == (2, 2)


def test_a_trial_that_never_sees_one_shape_keeps_the_current_count():
    machine = Machine()
    machine.busy = True
    tuner = ThreadTuner(machine.apply, (4, 4), first=1, every=1000, trial=8)
    for i in range(40):  # every step holds a different number of tokens: nothing to compare
        tuner.before_step()
        tuner.after_step(i + 1, False, machine.cost(i + 1))
    assert tuner.trials == 1 and tuner.switches == 0
    assert tuner.current == (4, 4) and machine.threads == (4, 4)
