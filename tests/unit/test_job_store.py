"""The SQLite job store: schema and WAL, event ids, step memoisation, artefacts, lineage merging,
interruption at start-up, and retention clean-up (also on its APScheduler schedule)."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest
from loom.daemon.jobs.retention import Retention, RetentionPolicy, clean_up
from loom.daemon.jobs.store import INTERRUPTED, JobStore
from loom.daemon.timers import Timers


@pytest.fixture
def store(tmp_path):
    s = JobStore(tmp_path / "loom.db")
    yield s
    s.close()


def make(store: JobStore, job_id: str = "j1", pipeline: str = "p", output_dir: str = "output/d/ses-1") -> dict:
    return store.create_job(job_id, pipeline, "plugin", b'{"prompt": "x"}', output_dir)


def test_the_database_is_in_wal_mode_with_every_table(store, tmp_path):
    assert store.db.journal_mode == "wal"
    assert {"jobs", "job_events", "job_steps", "artifacts", "job_lineage"} <= set(store.db.table_names())
    with sqlite3.connect(tmp_path / "loom.db") as other:  # another connection sees committed rows
        make(store)
        assert other.execute("select count(*) from jobs").fetchone()[0] == 1


def test_a_job_round_trips_with_json_columns(store):
    job = make(store)
    assert job["state"] == "queued" and job["params"] == {"prompt": "x"} and job["result"] is None
    store.update_job("j1", state="succeeded", result={"winner": "a"}, usage={"total_tokens": 3})
    job = store.get_job("j1")
    assert job["result"] == {"winner": "a"} and job["usage"]["total_tokens"] == 3
    assert job["updated_at"] >= job["created_at"]
    assert store.get_job("nope") is None


def test_event_ids_increase_per_job_and_survive_a_reopen(store, tmp_path):
    make(store, "a")
    make(store, "b")
    assert [store.append_event("a", "x", {"n": i}).id for i in range(3)] == [1, 2, 3]
    assert store.append_event("b", "x", {}).id == 1
    assert [e.id for e in store.events_after("a", 1)] == [2, 3]
    assert store.events_after("a", 1)[0].data == {"n": 1}
    store.close()
    reopened = JobStore(tmp_path / "loom.db")
    assert reopened.last_event_id("a") == 3
    assert reopened.append_event("a", "x", {}).id == 4
    reopened.close()


def test_steps_are_memoised_with_their_attempt(store):
    make(store)
    assert store.get_step("j1", "k") is None
    store.put_step("j1", "k", b'{"v": 1}', 10.0, 12.5, attempt=1)
    assert store.get_step("j1", "k") == b'{"v": 1}'
    assert store.step_stats("j1") == (1, 2.5)
    assert store.steps("j1")[0]["attempt"] == 1


def test_artifacts_are_replaced_by_path(store):
    make(store)
    store.put_artifact("j1", "output/d/ses-1/a.png", "a.png", "image/png", 10, "0" * 64, {"seed": 1})
    store.put_artifact("j1", "output/d/ses-1/a.png", "a.png", "image/png", 12, "1" * 64, {"seed": 2})
    store.put_artifact("j1", "output/d/ses-1/b.png", "b.png", "image/png", 5, "2" * 64, None)
    rows = store.artifacts("j1")
    assert [(r["name"], r["bytes"], r["meta"]) for r in rows] == [("a.png", 12, {"seed": 2}), ("b.png", 5, {})]


def test_lineage_nodes_merge_by_id(store):
    make(store)
    store.upsert_lineage("j1", {"id": "i0c0", "parent": None, "what": "w"})
    store.upsert_lineage("j1", {"id": "i1c0", "parent": "i0c0"})
    store.upsert_lineage("j1", {"id": "i0c0", "score": 5.0})
    assert store.lineage("j1") == [
        {"id": "i0c0", "parent": None, "what": "w", "score": 5.0},
        {"id": "i1c0", "parent": "i0c0"},
    ]


def test_running_and_queued_jobs_become_interrupted(store):
    make(store, "run")
    make(store, "queue")
    make(store, "done")
    store.update_job("run", state="running")
    store.update_job("done", state="succeeded")
    assert sorted(store.mark_interrupted()) == ["queue", "run"]
    assert {j["id"]: j["state"] for j in store.list_jobs()} == {
        "run": INTERRUPTED,
        "queue": INTERRUPTED,
        "done": "succeeded",
    }


def test_list_filters(store):
    for i, (pipeline, state) in enumerate([("a", "succeeded"), ("b", "failed"), ("a", "running")]):
        make(store, f"j{i}", pipeline)
        store.update_job(f"j{i}", state=state)
    assert {j["id"] for j in store.list_jobs(pipeline="a")} == {"j0", "j2"}
    assert {j["id"] for j in store.list_jobs(states=["failed", "running"])} == {"j1", "j2"}
    assert store.list_jobs(since=time.time() + 10) == []
    assert len(store.list_jobs(limit=2)) == 2


def test_retention_deletes_old_finished_jobs_and_their_folders(store, tmp_path):
    root = tmp_path
    for job_id, state in [("old", "succeeded"), ("oldfail", "failed"), ("stuck", INTERRUPTED), ("new", "succeeded")]:
        out = f"output/2020-01-01/ses-000000-{job_id}"
        (root / out).mkdir(parents=True)
        (root / out / "x.png").write_bytes(b"png")
        make(store, job_id, output_dir=out)
        store.append_event(job_id, "state", {"state": state})
        store.put_step(job_id, "k", b"1", 0, 1, 1)
        store.update_job(job_id, state=state, finished_at=time.time() - (0 if job_id == "new" else 100 * 86400))
    store.update_job("stuck", finished_at=None)
    store.db.execute("update jobs set updated_at = ? where id = 'stuck'", [time.time() - 100 * 86400])

    removed = clean_up(store, root, RetentionPolicy(retention=30 * 86400))
    assert sorted(removed) == ["old", "oldfail"]
    assert store.get_job("old") is None and store.events_after("old") == [] and store.get_step("old", "k") is None
    assert not (root / "output/2020-01-01/ses-000000-old").exists()
    # Interrupted jobs wait to be resumed; recent ones stay.
    assert store.get_job("stuck")["state"] == INTERRUPTED and (root / "output/2020-01-01/ses-000000-stuck").exists()
    assert store.get_job("new") is not None
    assert clean_up(store, root, RetentionPolicy(retention=None)) == []


def test_retention_refuses_to_delete_outside_the_output_folder(store, tmp_path):
    (tmp_path / "precious").mkdir()
    make(store, "evil", output_dir="../precious")
    store.update_job("evil", state="succeeded", finished_at=0.0)
    assert clean_up(store, tmp_path / "data", RetentionPolicy(retention=1)) == ["evil"]
    assert (tmp_path / "precious").exists()


def test_retention_policy_reads_the_config():
    from loom.daemon.config import JobsConfig

    assert RetentionPolicy.from_config(JobsConfig("7d", "10m")) == RetentionPolicy(retention=7 * 86400, interval=600)
    assert RetentionPolicy.from_config(JobsConfig(retention="never")).retention is None
    # What users generated is kept unless the config says otherwise.
    default = RetentionPolicy.from_config(JobsConfig())
    assert default.retention is None and not default.delete_rag and default.describe() is None
    on = RetentionPolicy.from_config(JobsConfig(retention="30d", rag="delete"))
    assert on.delete_rag and "older than 30d" in on.describe() and "deleted with them" in on.describe()


def test_prune_lists_on_a_dry_run_and_removes_otherwise(store, tmp_path):
    from loom.daemon.jobs.retention import prune

    for job_id, age in (("a", 40), ("b", 50), ("c", 1)):
        out = f"output/2020-01-01/ses-000000-{job_id}"
        (tmp_path / out).mkdir(parents=True)
        make(store, job_id, output_dir=out)
        store.update_job(job_id, state="succeeded", finished_at=time.time() - age * 86400)
    listed = prune(store, tmp_path, 30 * 86400, dry_run=True)
    assert [j["id"] for j in listed] == ["b", "a"] and listed[0]["pipeline"] and listed[0]["rag_entries"] is None
    assert store.get_job("a") is not None and (tmp_path / "output/2020-01-01/ses-000000-a").exists()
    assert [j["id"] for j in prune(store, tmp_path, 30 * 86400)] == ["b", "a"]
    assert store.get_job("a") is None and not (tmp_path / "output/2020-01-01/ses-000000-a").exists()
    assert store.get_job("c") is not None


def test_retention_off_schedules_nothing(store, tmp_path):
    async def main():
        timers = Timers()
        Retention(store, tmp_path, RetentionPolicy()).schedule(timers)
        timers.start()
        try:
            assert timers.job("loom-job-retention") is None
        finally:
            timers.stop()

    asyncio.run(main())


def test_retention_runs_on_an_apscheduler_schedule(store, tmp_path):
    async def main():
        timers = Timers()
        Retention(store, tmp_path, RetentionPolicy(retention=1, interval=3600)).schedule(timers)
        timers.start()
        try:
            job = timers.job("loom-job-retention")
            assert job is not None and job.trigger.interval.total_seconds() == 3600
            assert job.next_run_time is not None
        finally:
            timers.stop()
        assert not timers.running

    asyncio.run(main())


# --- pipeline registration -------------------------------------------------------------------------


def _plugin(pipeline_cls):
    import types

    from loom.sdk import hookimpl

    module = types.ModuleType(f"plugin_{id(pipeline_cls)}")

    @hookimpl
    def register_pipelines(register):
        register(pipeline_cls)

    module.register_pipelines = register_pipelines
    return module


def _pipeline(name: str):
    import msgspec
    from loom.sdk.pipelines import Pipeline

    class SketchParams(msgspec.Struct, forbid_unknown_fields=True):
        x: int = 1

    class P(Pipeline):
        Params = SketchParams

        async def run(self, params, ctx):
            return {"x": params.x}

    P.name = name
    return P


def test_pipelines_are_collected_with_their_plugin_and_duplicates_stop_start_up(monkeypatch):
    from loom.daemon.jobs import collect_pipelines
    from loom.daemon.plugin_manager import make_plugin_manager
    from loom.sdk.errors import PluginError

    monkeypatch.setenv("LOOM_LOAD_PLUGINS", "beam_search,first,second")  # not other plugins' imports
    pm, infos = make_plugin_manager({}, {"first": _plugin(_pipeline("sketch"))})
    pipelines = collect_pipelines(pm, infos)
    assert pipelines["sketch"].plugin == "first" and infos["first"].pipelines == ["sketch"]
    assert pipelines["beam_search"].plugin == "beam_search"  # built in, through its entry point

    pm, infos = make_plugin_manager({}, {"first": _plugin(_pipeline("dup")), "second": _plugin(_pipeline("dup"))})
    with pytest.raises(PluginError, match="'dup' is registered by two plugins: 'first' and 'second'"):
        collect_pipelines(pm, infos)


def test_a_pipeline_that_does_not_subclass_the_sdks_is_refused_at_registration(monkeypatch):
    import msgspec
    from loom.daemon.jobs import collect_pipelines
    from loom.daemon.plugin_manager import make_plugin_manager
    from loom.sdk.errors import PluginError

    class LooksRight:  # name, Params and an async run, but not a loom.sdk.Pipeline
        name = "lookalike"

        class Params(msgspec.Struct):
            x: int = 1

        async def run(self, params, ctx):
            return {}

    monkeypatch.setenv("LOOM_LOAD_PLUGINS", "first")
    pm, infos = make_plugin_manager({}, {"first": _plugin(LooksRight)})
    with pytest.raises(PluginError, match="'lookalike' \\(plugin 'first'\\) must subclass loom.sdk.Pipeline"):
        collect_pipelines(pm, infos)


def test_retention_removes_a_deleted_jobs_retrieval_entries(store, tmp_path):
    import numpy as np
    from loom.daemon.rag import RagStore

    rag = RagStore(tmp_path / "rag", use_faiss=False)
    vectors = np.eye(4, dtype=np.float32)
    for job_id, age in (("old", 100 * 86400), ("new", 0)):
        out = f"output/2020-01-01/ses-000000-{job_id}"
        (tmp_path / out).mkdir(parents=True)
        make(store, job_id, output_dir=out)
        store.update_job(job_id, state="succeeded", finished_at=time.time() - age)
    rag.add("stories", vectors[:2], [{"text": "old story", "job_id": "old"}] * 2, model="m")
    rag.add("stories", vectors[2:], [{"text": "new story", "job_id": "new"}] * 2, model="m")
    # Kept by default: the memory only grows.
    assert clean_up(store, tmp_path, RetentionPolicy(retention=30 * 86400), rag=rag) == ["old"]
    assert rag.stats()["items"] == 4
    make(store, "old", output_dir="output/2020-01-01/ses-000000-old")
    store.update_job("old", state="succeeded", finished_at=time.time() - 100 * 86400)
    assert clean_up(store, tmp_path, RetentionPolicy(retention=30 * 86400, delete_rag=True), rag=rag) == ["old"]
    rag.wait_idle()
    assert rag.stats()["items"] == 2
    assert {h["job_id"] for h in rag.search("stories", vectors[0], model="m", k=4)} == {"new"}
    rag.close()


@pytest.mark.parametrize("durability, synchronous", [("normal", 1), ("full", 2)])
def test_durability_sets_synchronous_on_every_store(tmp_path, durability, synchronous):
    from loom.daemon.evaluations import EvaluationStore
    from loom.daemon.rag import RagStore
    from loom.daemon.records import RecordStore
    from loom.daemon.responses import ResponseStore

    jobs = JobStore(tmp_path / "loom.db", durability)
    records = RecordStore(tmp_path / "records.db", durability)
    responses = ResponseStore(tmp_path / "responses.db", durability)
    rag = RagStore(tmp_path / "rag", use_faiss=False, durability=durability)
    evaluations = EvaluationStore(tmp_path / "evaluations.db", durability)
    try:
        assert jobs.db.execute("pragma synchronous").fetchone()[0] == synchronous
        assert records._db.execute("pragma synchronous").fetchone()[0] == synchronous
        assert responses.db.execute("pragma synchronous").fetchone()[0] == synchronous
        assert rag._db.execute("pragma synchronous").fetchone()[0] == synchronous
        assert evaluations.db.execute("pragma synchronous").fetchone()[0] == synchronous
        assert jobs.db.execute("pragma journal_mode").fetchone()[0] == "wal"
    finally:
        for s in (jobs, records, responses, rag, evaluations):
            s.close()
