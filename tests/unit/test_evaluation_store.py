"""The A/B preference store: records, lists newest first, knows judged pairs, exports JSONL, and
keeps everything across a reopen."""

from __future__ import annotations

import json

import pytest
from loom.daemon.evaluations import EvaluationStore, export_jsonl
from loom.sdk.errors import InvalidRequest


def side(job, cand):
    return {"job_id": job, "candidate": cand, "image": f"output/{job}/{cand}.png", "prompt": "an owl"}


def test_record_list_pairs_and_export(tmp_path):
    store = EvaluationStore(tmp_path / "evaluations.db")
    first = store.add(side("j1", "i0c0"), side("j1", "i0c1"), "a", reason="  sharper  ", source="ui")
    second = store.add(side("j1", "i0c2"), side("j2", "i0c0"), "tie")
    assert first["preferred"]["candidate"] == "i0c0" and first["reason"] == "sharper" and first["prompt"] == "an owl"
    assert second["preferred"] is None and second["reason"] is None
    assert [e["id"] for e in store.list()] == [second["id"], first["id"]]
    assert [e["id"] for e in store.list(job_id="j2")] == [second["id"]]
    assert store.judged_pairs("j1") == {frozenset(("i0c0", "i0c1"))}
    lines = [json.loads(line) for line in b"".join(export_jsonl(store)).splitlines()]
    assert [e["id"] for e in lines] == [first["id"], second["id"]]
    store.close()
    reopened = EvaluationStore(tmp_path / "evaluations.db")
    assert reopened.count() == 2
    reopened.close()


def test_bad_choice_and_long_reason_are_refused(tmp_path):
    store = EvaluationStore(tmp_path / "e.db")
    with pytest.raises(InvalidRequest) as e:
        store.add(side("j", "a"), side("j", "b"), "left")
    assert e.value.param == "choice"
    with pytest.raises(InvalidRequest) as e:
        store.add(side("j", "a"), side("j", "b"), "a", reason="x" * 2001)
    assert e.value.param == "reason" and store.count() == 0
    store.close()
