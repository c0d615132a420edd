"""The admission queue's order, budgets and bounds, and the per-model room of job calls."""

from __future__ import annotations

import asyncio

import pytest
from loom.daemon.jobs.admission import Admission, Budget, ModelRoom
from loom.sdk.errors import QueueFull


def run(coro):
    return asyncio.run(coro)


def test_jobs_run_within_the_budget_by_priority_then_age():
    async def main():
        adm = Admission(Budget(max_running=2))
        w = {
            name: adm.enqueue(name, "p", "o", prio, created)
            for name, prio, created in [
                ("a", 0, 1.0),
                ("b", 0, 2.0),
                ("c", 0, 3.0),
                ("old", 0, 0.5),  # a resumed job: older than the rest
                ("urgent", 5, 4.0),
            ]
        }
        assert [n for n, x in w.items() if x.admitted.done()] == ["a", "b"]
        assert [adm.position(n) for n in ("urgent", "old", "c")] == [1, 2, 3]
        assert adm.position("a") is None
        adm.release("a")
        assert w["urgent"].admitted.done() and not w["old"].admitted.done()
        adm.release("b")
        assert w["old"].admitted.done() and adm.position("c") == 1

    run(main())


def test_a_pipeline_takes_no_more_than_its_share():
    async def main():
        adm = Admission(Budget(max_running=3, pipeline_default=2, per_pipeline={"beam": 1}))
        t = [adm.enqueue(f"t{i}", "translate", "o", 0, float(i)) for i in range(3)]
        b = [adm.enqueue(f"b{i}", "beam", "o", 0, 10.0 + i) for i in range(2)]
        assert [x.admitted.done() for x in t + b] == [True, True, False, True, False]
        adm.release("b0")
        assert b[1].admitted.done() and not t[2].admitted.done()
        adm.release("t0")
        assert t[2].admitted.done()

    run(main())


def test_the_position_at_acceptance_counts_who_is_ahead():
    async def main():
        adm = Admission(Budget(max_running=1))
        adm.enqueue("run", "p", "o", 0, 0.0)
        places = [adm.enqueue(f"q{i}", "p", "o", 0, 1.0 + i).reported for i in range(3)]
        high = adm.enqueue("high", "p", "o", 1, 9.0).reported
        old = adm.enqueue("old", "p", "o", 0, 0.5).reported
        assert places == [1, 2, 3] and high == 1 and old == 2
        assert [adm.position(f"q{i}") for i in range(3)] == [3, 4, 5]

    run(main())


def test_a_removed_job_never_runs_and_those_behind_move_up():
    async def main():
        told: list[tuple[str, int]] = []
        adm = Admission(Budget(max_running=1), report=lambda job, pos: told.append((job, pos)))
        adm.enqueue("run", "p", "o", 0, 0.0)
        gone = adm.enqueue("gone", "p", "o", 0, 1.0)
        for i in range(3):
            adm.enqueue(f"q{i}", "p", "o", 0, 2.0 + i)
        assert adm.remove("gone") and gone.admitted.cancelled()
        assert not adm.remove("gone")
        assert [adm.position(f"q{i}") for i in range(3)] == [1, 2, 3]
        await asyncio.sleep(1.1)  # positions are told at most once a second, when they have halved
        assert told == [("q0", 1)]  # 2 -> 1 halved; 3 -> 2 and 4 -> 3 did not
        adm.release("run")
        assert "q0" in adm.running and "gone" not in adm.running
        adm.close()

    run(main())


def test_the_queued_bounds_per_owner_and_overall():
    async def main():
        adm = Admission(Budget(max_running=1, max_queued=3, max_queued_per_owner=2))
        adm.enqueue("r", "p", "alice", 0, 0.0)  # running: not queued
        for i in range(2):
            adm.check_room("alice")
            adm.enqueue(f"a{i}", "p", "alice", 0, 1.0 + i)
        with pytest.raises(QueueFull) as refused:
            adm.check_room("alice")
        assert refused.value.code == "job_queue_full" and refused.value.retry_after >= 1
        adm.check_room("bob")
        adm.enqueue("b0", "p", "bob", 0, 5.0)
        with pytest.raises(QueueFull, match="max_queued = 3"):
            adm.check_room("bob")
        adm.remove("a0")
        adm.check_room("alice")

    run(main())


def test_model_room_holds_calls_to_the_limit_in_arrival_order():
    async def main():
        room = ModelRoom(lambda model: 2)
        order: list[int] = []

        async def call(i: int) -> None:
            await room.acquire("m")
            order.append(i)
            await asyncio.sleep(0.01)
            room.release("m")

        tasks = [asyncio.create_task(call(i)) for i in range(5)]
        await asyncio.sleep(0)
        assert room.in_flight("m") == 2
        await asyncio.gather(*tasks)
        assert order == [0, 1, 2, 3, 4] and room.in_flight("m") == 0

        # A waiter that is cancelled gives no place away; one granted as it was cancelled hands it on.
        assert room.try_acquire("m") and room.try_acquire("m") and not room.try_acquire("m")
        waiter = asyncio.create_task(room.acquire("m"))
        await asyncio.sleep(0)
        waiter.cancel()
        room.release("m")
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert room.in_flight("m") == 1

    run(main())


def test_a_call_that_met_a_full_queue_wakes_when_a_job_call_ends():
    async def main():
        room = ModelRoom(lambda model: 4)
        assert room.try_acquire("m")
        woke = asyncio.create_task(room.wait_for_room("m", timeout=5))
        await asyncio.sleep(0)
        room.release("m")
        await asyncio.wait_for(woke, 0.5)  # well before its timeout
        loop = asyncio.get_running_loop()
        started = loop.time()
        await room.wait_for_room("m", timeout=0.05)  # nothing ends: the timeout
        assert loop.time() - started >= 0.04

    run(main())
