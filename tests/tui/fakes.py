"""Fixed daemon data for snapshot tests: a stand-in for AsyncLoomClient and a state filled by hand,
so every run of a screen draws exactly the same thing."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from loom.sdk.client import ServerEvent
from loom.tui.state import LogLine
from PIL import Image

NOW = 1_800_000_000.0  # the frozen clock
MIB = 2**20
JOB = "a1b2c3d4e5f6"


def _resident(model: str, mib: int, idle: float, keep_alive: float | None, pinned=False, running=0) -> dict:
    return {
        "model": model,
        "footprint": mib * MIB,
        "estimate": mib * MIB,
        "measured": 0,
        "load_seconds": 0.5,
        "loaded_at": NOW - 600,
        "last_used": NOW - idle,
        "idle_seconds": idle,
        "pinned": pinned,
        "keep_alive": keep_alive,
        "running": running,
        "queued": 0,
        "evicting": False,
    }


SCHEDULER = {
    "policy": "affinity",
    "pinned": ["sd-turbo"],
    "devices": [
        {
            "name": "cuda:0",
            "kind": "cuda",
            "available": True,
            "reason": None,
            "parallel": False,
            "total": 24576 * MIB,
            "budget": 20480 * MIB,
            "used": 13312 * MIB,
            "reserved": 1024 * MIB,
            "free": 6144 * MIB,
            "loading": None,
            "resident": [
                _resident("sd-turbo", 6144, 4.0, 300.0, pinned=True, running=1),
                _resident("qwen-7b", 5120, 42.0, 300.0),
                _resident("clip-vit", 2048, 290.0, 300.0),
            ],
            "queue": {"depth": 5, "by_model": {"sd-turbo": {"pipeline": 3}, "qwen-7b": {"interactive": 1, "batch": 1}}},
            "running": [
                {
                    "id": "wk_0123456789ab",
                    "model": "sd-turbo",
                    "device": "cuda:0",
                    "priority": "pipeline",
                    "kind": "image",
                    "state": "running",
                    "waited": 0.2,
                    "running_for": 1.5,
                }
            ],
            "queued": [],
        },
        {
            "name": "remote",
            "kind": "remote",
            "available": True,
            "reason": None,
            "parallel": True,
            "total": None,
            "budget": None,
            "used": 0,
            "reserved": 0,
            "free": None,
            "loading": None,
            "resident": [],
            "queue": {"depth": 0, "by_model": {}},
            "running": [],
            "queued": [],
        },
    ],
}


def _device(name: str, kind: str, budget_mib: int, resident: list[dict], node: str | None = None) -> dict:
    used = sum(r["footprint"] for r in resident)
    return {
        "name": name,
        **({"node": node} if node else {}),
        "kind": kind,
        "available": True,
        "reason": None,
        "parallel": False,
        "total": budget_mib * MIB,
        "budget": budget_mib * MIB,
        "used": used,
        "reserved": 0,
        "free": budget_mib * MIB - used,
        "loading": None,
        "resident": resident,
        "queue": {"depth": 0, "by_model": {}},
        "running": [],
        "queued": [],
    }


#: A daemon on a Ray cluster: its own CPU, then two nodes (one with a GPU, one Loom cannot use).
CLUSTER = {
    **SCHEDULER,
    "devices": [
        _device("cpu", "cpu", 8192, [_resident("mock-chat", 64, 3.0, 300.0)]),
        _device("gpu-a/cpu", "cpu", 16384, [], node="gpu-a"),
        _device(
            "gpu-a/cuda:0",
            "cuda",
            20480,
            [_resident("qwen-7b", 5120, 42.0, 300.0), _resident("sd-turbo", 6144, 4.0, 300.0, pinned=True)],
            node="gpu-a",
        ),
        _device("gpu-b/cpu", "cpu", 16384, [_resident("clip-vit", 2048, 290.0, 300.0)], node="gpu-b"),
    ],
    "nodes": [
        {
            "name": "gpu-a",
            "id": "a" * 56,
            "address": "10.0.0.11",
            "usable": True,
            "error": None,
            "resources": {"CPU": 16.0, "GPU": 1.0, "memory": 48e9, "nvlink": 1.0},
            "labels": {"loom-node": "gpu-a"},
            "memory": 64 * 2**30,
            "gpus": 1,
            "devices": ["gpu-a/cpu", "gpu-a/cuda:0"],
        },
        {
            "name": "gpu-b",
            "id": "b" * 56,
            "address": "10.0.0.12",
            "usable": True,
            "error": None,
            "resources": {"CPU": 8.0},
            "labels": {"loom-node": "gpu-b"},
            "memory": 32 * 2**30,
            "gpus": 0,
            "devices": ["gpu-b/cpu"],
        },
    ],
}

JOBS = [
    {
        "id": JOB,
        "pipeline": "beam_search",
        "state": "running",
        "stage": "iteration 1: image",
        "progress": 42.0,
        "message": "",
        "created_at": NOW - 30,
        "started_at": NOW - 29,
        "finished_at": None,
        "attempts": 1,
    },
    {
        "id": "0f0f0f0f0f0f",
        "pipeline": "beam_search",
        "state": "succeeded",
        "stage": "done",
        "progress": 100.0,
        "message": "",
        "created_at": NOW - 900,
        "started_at": NOW - 899,
        "finished_at": NOW - 850,
        "attempts": 1,
    },
    {
        "id": "dead00beef00",
        "pipeline": "beam_search",
        "state": "failed",
        "stage": "iteration 0: image",
        "progress": 12.5,
        "message": "",
        "created_at": NOW - 1800,
        "started_at": NOW - 1799,
        "finished_at": NOW - 1790,
        "attempts": 1,
        "error": {"message": "the mock GPU caught fire"},
    },
]

MODELS = [
    {"id": "sd-turbo", "provider": "diffusers", "capabilities": ["image"]},
    {"id": "qwen-7b", "provider": "llamacpp", "capabilities": ["chat", "completion"]},
    {"id": "clip-vit", "provider": "openclip", "capabilities": ["vision", "embedding"]},
    {"id": "gpt-remote", "provider": "openai", "capabilities": ["chat"]},
]

PROVIDERS = {
    "object": "providers",
    "upstreams": [
        {
            "upstream": "openai:api.openai.com",
            "status": "ok",
            "healthy": True,
            "error": None,
            "latency_ms": 182.0,
            "checked_at": "2027-01-15T08:00:00+00:00",
            "models": [{"id": "gpt-remote", "remote_id": "gpt-4o-mini", "listed": True}],
        }
    ],
    "models": [
        {
            "id": "sd-turbo",
            "provider": "diffusers",
            "remote": False,
            "healthy": True,
            "switched_to": None,
            "served_by": {"image": "sd-turbo"},
        },
        {
            "id": "qwen-7b",
            "provider": "llamacpp",
            "remote": False,
            "healthy": True,
            "switched_to": "gpt-remote",
            "served_by": {"chat": "gpt-remote", "completion": "qwen-7b"},
        },
        {
            "id": "clip-vit",
            "provider": "openclip",
            "remote": False,
            "healthy": True,
            "switched_to": None,
            "served_by": {"vision": "clip-vit"},
        },
        {
            "id": "gpt-remote",
            "provider": "openai",
            "remote": True,
            "healthy": True,
            "switched_to": None,
            "served_by": {"chat": "gpt-remote"},
        },
    ],
    "switches": {"models": {"qwen-7b": "gpt-remote"}, "capabilities": {}},
}


def _node(it: int, i: int, parent: str | None, score: float | None, kept: list[int], winner=False, **kw) -> dict:
    node = {
        "id": f"i{it}c{i}",
        "parent": parent,
        "iteration": it,
        "index": i,
        "dimension": None if it == 0 else ("what" if it % 2 else "how"),
        "what": f"a red apple, variant {it}.{i}",
        "how": "oil painting, warm light",
        "combined": "",
        "critique": None
        if it == 0
        else {
            "what": {
                "critique": "the apple is too small",
                "recommendation": "make it fill the frame",
                "reason": "focus",
            },
            "how": {"critique": "flat light", "recommendation": "low warm side light", "reason": "depth"},
        },
        "description": "a small red fruit on a table" if kept else None,
        "image": f"output/job/i{it}c{i}.png",
        "image_url": f"/v1/files/output/job/i{it}c{i}.png",
        "clip": None if score is None else round(score / 100, 3),
        "aesthetic": None if score is None else 6.5,
        "alignment": score,
        "score": score,
        "status": "scored",
        "error": None,
        "kept_in": kept,
        "rank": 1 if winner else None,
        "global_rank": 1 if winner else None,
        "comparisons": [],
        "winner": winner,
    }
    node.update(kw)
    return node


def _verdict(it: int, opponent: str, won: bool, reason: str, by: str = "judge") -> dict:
    return {
        "iteration": it,
        "opponent": opponent,
        "result": "win" if won else "loss",
        "decided_by": by,
        "reason": reason,
    }


LINEAGE_NODES = [
    _node(0, 0, None, 31.5, [0]),
    _node(0, 1, None, 28.25, []),
    _node(0, 2, None, 35.0, [0, 1]),
    _node(
        1,
        0,
        "i0c2",
        47.75,
        [1],
        winner=True,
        comparisons=[
            _verdict(1, "i1c1", True, "A fills the frame; B is blurred"),
            _verdict(1, "i0c2", True, "sharper apple, warmer light"),
        ],
    ),
    _node(1, 1, "i0c2", 22.0, [], comparisons=[_verdict(1, "i1c0", False, "A fills the frame; B is blurred")]),
    _node(
        1,
        2,
        "i0c0",
        None,
        [],
        image=None,
        image_url=None,
        status="failed",
        error={"stage": "image", "type": "server_error", "code": "provider_error", "message": "the GPU ran out"},
    ),
]

JOB_DETAIL = {
    **JOBS[1],
    "object": "job",
    "output_dir": "output/job",
    "output_url": "/v1/files/output/job/",
    "params": {"prompt": "a red apple"},
    "error": None,
    "result": {"winner": {"id": "i1c0", "score": 47.75}, "iterations": 2},
    "timings": {
        "queued_seconds": 0.5,
        "elapsed_seconds": 50.0,
        "run_seconds": 49.0,
        "steps": 24,
        "step_seconds": 40.0,
        "by_capability": {},
    },
    "usage": {"prompt_tokens": 900, "completion_tokens": 300, "total_tokens": 1200, "by_model": {}},
    "artifacts": [],
    "last_event_id": 6,
}

JOB_EVENTS = [
    ("state", {"state": "queued"}),
    ("state", {"state": "running", "attempt": 1}),
    ("progress", {"progress": 0.0, "stage": "starting", "message": ""}),
    ("step", {"key": "i0c0/expand-what", "seconds": 0.25, "attempt": 1}),
    ("progress", {"progress": 100.0, "stage": "done", "message": "winner i1c0 scored 47.75"}),
    ("state", {"state": "succeeded"}),
]

LOG = [
    ("scheduler", "loaded", "qwen-7b loaded on cuda:0: 5.0 GiB in 3.2s"),
    ("scheduler", "evicted", "llava evicted from cuda:0 (room for sd-turbo), freed 4.0 GiB"),
    ("scheduler", "loaded", "sd-turbo loaded on cuda:0: 6.0 GiB in 8.1s"),
    ("scheduler", "queued", "wk_0123456789ab queued for sd-turbo (pipeline, depth 3)"),
    ("scheduler", "started", "wk_0123456789ab started on sd-turbo (cuda:0) after 0.2s"),
    ("job", "progress", f"job {JOB} 42% iteration 1: image"),
    ("scheduler", "finished", "wk_00000000aaaa finished on qwen-7b in 1.4s"),
    ("scheduler", "memory", "cuda:0: 13 GiB of 20 GiB used; resident: clip-vit, qwen-7b, sd-turbo"),
]


def png(seed: int = 0) -> bytes:
    """A small deterministic gradient."""
    img = Image.new("RGB", (32, 32))
    img.putdata([((x * 8 + seed * 40) % 256, y * 8, 128) for y in range(32) for x in range(32)])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


BATCHES = [
    {
        "id": "batch_running1",
        "object": "batch",
        "endpoint": "/v1/embeddings",
        "status": "in_progress",
        "created_at": NOW - 30,
        "request_counts": {"total": 1000, "completed": 400, "failed": 2},
    },
    {
        "id": "batch_done0001",
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "status": "completed",
        "created_at": NOW - 300,
        "request_counts": {"total": 200, "completed": 200, "failed": 0},
    },
]


class FakeClient:
    """The AsyncLoomClient methods the TUI calls, answering with the data above."""

    url = "http://127.0.0.1:11435"

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []

    async def events(self, path: str = "/admin/events", *, on_status=None, **kw):
        if on_status:
            on_status(True, None)
        await asyncio.Event().wait()  # a quiet daemon
        yield  # pragma: no cover

    async def job_events(self, job_id: str, after: int = 0, **kw):
        for n, (kind, data) in enumerate(JOB_EVENTS, 1):
            if n > after:
                yield ServerEvent(
                    kind, {"job_id": job_id, "id": n, "type": kind, "data": data, "created_at": NOW - 50 + n}, str(n)
                )

    async def scheduler(self) -> dict:
        return SCHEDULER

    async def jobs(self, **kw) -> dict:
        return {"object": "list", "data": JOBS, "has_more": False}

    async def job(self, job_id: str) -> dict:
        return {**JOB_DETAIL, "id": job_id}

    async def lineage(self, job_id: str) -> dict:
        return {
            "object": "lineage",
            "job_id": job_id,
            "state": "succeeded",
            "winner": "i1c0",
            "path": ["i0c2", "i1c0"],
            "nodes": LINEAGE_NODES,
            "tree": [],
        }

    async def file(self, path: str) -> bytes:
        return png(int(path[-5]) if path[-5].isdigit() else 0)

    async def models(self) -> list[dict]:
        return MODELS

    async def providers(self) -> dict:
        return PROVIDERS

    async def metrics(self) -> str:
        return 'loom_tokens_total{model="qwen-7b"} 1000.0\nloom_images_total{model="sd-turbo"} 10.0\n'

    async def _record(self, name: str, *args) -> dict:
        self.calls.append((name, args))
        return {"id": args[0] if args else None, "state": "cancelled"}

    async def batches(self, **kw) -> dict:
        return {"object": "list", "data": BATCHES, "has_more": False}

    async def cancel_batch(self, batch_id: str) -> dict:
        return await self._record("cancel_batch", batch_id)

    async def cancel_job(self, job_id: str) -> dict:
        return await self._record("cancel_job", job_id)

    async def resume_job(self, job_id: str) -> dict:
        return await self._record("resume_job", job_id)

    async def load_model(self, model: str) -> dict:
        return await self._record("load_model", model)

    async def unload_model(self, model: str) -> dict:
        return await self._record("unload_model", model)

    async def pin_model(self, model: str, pinned: bool = True) -> dict:
        return await self._record("pin_model", model, pinned)

    async def switch_provider(self, model: str, to: str | None) -> dict:
        return await self._record("switch_provider", model, to)

    async def check_providers(self) -> dict:
        return PROVIDERS

    async def aclose(self) -> None:
        pass


def filled_app(scheduler: dict | None = None, **kw: Any):
    """A LoomApp on a FakeClient with its state filled in, and no live streams or timers."""
    from loom.tui.app import LoomApp

    app = LoomApp(FakeClient(), live=False, **kw)
    state = app.state
    state.connected = state.ever_connected = True
    state.scheduler, state.scheduler_at = scheduler or SCHEDULER, NOW
    state.set_jobs(JOBS)
    state.models, state.providers = MODELS, PROVIDERS
    for _k, (tokens, images) in enumerate(zip([0, 5, 12, 30, 42, 38, 50, 61, 20, 0] * 6, [0, 1, 2, 4, 3, 5] * 10)):
        state.throughput.tokens_per_s.append(float(tokens))
        state.throughput.images_per_min.append(float(images))
    for n, (source, kind, text) in enumerate(LOG):
        state.record(LogLine(NOW - 60 + n * 5, source, kind, text))
    return app
