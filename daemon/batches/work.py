"""Running a batch: the ``Batches`` service the routes call, and the job that does the work.

A batch is a job of the built-in ``openai_batch`` pipeline, submitted at the lowest job priority
(:data:`PRIORITY`), and its model calls go to the scheduler at ``Priority.BATCH``: it waits behind
other jobs and its calls behind interactive requests, so it runs in their gaps. The job:

1. ``validating``: reads the input file (:mod:`.lines`); a file that cannot be run fails the batch
   with OpenAI's ``errors`` list; otherwise its lines are stored and the batch is ``in_progress``.
2. runs the lines that have no result yet, model by model (each model is loaded once, not once
   per line), a few at a time (``[batches] concurrency``), each through its endpoint's own code
   path (the :class:`LineRunner` the API layer provides), under the job's back-pressure and
   cancellation; each line's result is stored as it ends. A line that fails fails alone.
3. ``finalizing``: writes the output file (lines answered 2xx) and the error file (the others),
   in OpenAI's line format, as files of purpose ``batch_output``; then ``completed``.

A restart interrupts the job; it resumes with the daemon (``[jobs] resume_interrupted``) and runs
only the lines without a result. Cancelling stops the lines in flight, then writes the files of
what has finished (``cancelling`` -> ``cancelled``); past its ``completion_window`` a batch stops
the same way, its unrun lines in the error file as ``batch_expired`` (``expired``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any, Protocol

import msgspec
from loom.sdk.errors import Cancelled, Conflict, InvalidRequest, LoomError, NotFound
from loom.sdk.pipelines import Pipeline, PipelineContext
from loom.sdk.protocols import RunContext

from ..config import BatchesConfig
from ..jobs.context import JobContext
from ..jobs.runner import JobRunner, PipelineInfo
from ..uploads import BATCH_OUTPUT, UploadStore
from . import lines as batch_lines
from .store import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    DONE,
    ENDED,
    ERROR,
    EXPIRED,
    FAILED,
    FINALIZING,
    IN_PROGRESS,
    VALIDATING,
    BatchStore,
    new_batch_id,
)

log = logging.getLogger("loom.batches")
PIPELINE = "openai_batch"
#: The lowest job priority (``?priority=`` takes -100..100): every other job goes first.
PRIORITY = -100
WINDOWS = {"24h": 86400}
#: How often, at most, a running batch reports its progress to its job.
PROGRESS_INTERVAL_S = 1.0


class LineRunner(Protocol):
    """Runs one request of a batch through its endpoint's code path (the route's, less HTTP)."""

    async def run(self, endpoint: str, body: bytes, ctx: RunContext, owner: str) -> dict[str, Any]:
        """The answer's JSON body; raises the LoomError the route would have answered. ``owner``:
        the batch's principal, whose the line's stored answer and images are."""
        ...

    def status_of(self, error: LoomError) -> int:
        """The HTTP status the route answers ``error`` with."""
        ...


class BatchParams(msgspec.Struct, forbid_unknown_fields=True):
    batch_id: str


class Batches:
    """Create, read, list and cancel batches (what ``/v1/batches`` calls)."""

    def __init__(self, store: BatchStore, uploads: UploadStore, runner: JobRunner, config: BatchesConfig) -> None:
        self.store = store
        self.uploads = uploads
        self.runner = runner
        self.config = config

    def create(
        self,
        owner: str,
        input_file_id: str,
        endpoint: str,
        completion_window: str,
        metadata: dict | None,
        output_expires_in: int | None = None,
    ) -> dict[str, Any]:
        """A new batch of the caller's file ``input_file_id`` (purpose ``batch``), ``validating``
        until its job starts; its output and error files expire ``output_expires_in`` seconds
        after they are written (None: they are kept until deleted)."""
        if endpoint not in batch_lines.ENDPOINTS:
            raise InvalidRequest(
                f"endpoint must be one of {', '.join(batch_lines.ENDPOINTS)}, got {endpoint!r}", param="endpoint"
            )
        if completion_window not in WINDOWS:
            raise InvalidRequest(
                f"completion_window must be '24h', got {completion_window!r}", param="completion_window"
            )
        try:
            file = self.uploads.get(input_file_id, owner)
        except NotFound as e:
            raise NotFound(e.message, param="input_file_id") from None
        if file["purpose"] != "batch":
            raise InvalidRequest(
                f"File {input_file_id} was uploaded with purpose '{file['purpose']}'; a batch's input needs 'batch'",
                param="input_file_id",
            )
        batch_id = new_batch_id()
        # The job first (a full job queue is a 429 before anything is stored); its task starts
        # only after this returns, when the row below exists.
        job = self.runner.submit(PIPELINE, BatchParams(batch_id=batch_id), owner=owner, priority=PRIORITY)
        now = int(time.time())
        row = {
            "id": batch_id,
            "owner": owner,
            "endpoint": endpoint,
            "input_file_id": input_file_id,
            "completion_window": completion_window,
            "status": VALIDATING,
            "created_at": now,
            "expires_at": now + WINDOWS[completion_window],
            "metadata": metadata,
            "output_expires_in": output_expires_in,
            "job_id": job["id"],
        }
        return self.view(self.store.create(row))

    def get(self, batch_id: str, owner: str | None) -> dict[str, Any]:
        return self.view(self.store.get(batch_id, owner))

    def page(self, owner: str | None, *, limit: int = 20, after: str | None = None) -> dict[str, Any]:
        rows, more = self.store.page(owner, limit=limit, after=after)
        data = [self.view(r) for r in rows]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": more,
        }

    async def cancel(self, batch_id: str, owner: str | None) -> dict[str, Any]:
        batch = self.store.get(batch_id, owner)
        if batch["status"] in ENDED:
            raise Conflict(f"Cannot cancel a batch with status '{batch['status']}'", param="batch_id")
        if batch["status"] == CANCELLING:
            return self.view(batch)
        self.store.update(batch_id, status=CANCELLING)
        job_id = batch["job_id"]
        running = self.runner.is_active(job_id) and self.runner.get(job_id)["state"] == "running"
        if running:  # the job stops its lines and writes what finished (see BatchPipeline)
            await self.runner.cancel(job_id, wait=5.0)
        else:  # queued, interrupted or ended: nothing runs it, so it ends here
            try:
                await self.runner.cancel(job_id, wait=0)
            except (Conflict, NotFound):  # ended already, or pruned by retention
                pass
            finalize(self.store, self.uploads, self.store.get(batch_id), CANCELLED)
        return self.view(self.store.get(batch_id))

    def view(self, row: dict[str, Any]) -> dict[str, Any]:
        """A batch as OpenAI's ``Batch`` object (fields with no value are left out)."""
        out: dict[str, Any] = {
            "id": row["id"],
            "object": "batch",
            "endpoint": row["endpoint"],
            "input_file_id": row["input_file_id"],
            "completion_window": row["completion_window"],
            "status": row["status"],
            "created_at": row["created_at"],
            "request_counts": self.store.counts(row["id"]),
            "metadata": row["metadata"],
        }
        if row["errors"]:
            out["errors"] = {"object": "list", "data": row["errors"]}
        for name in (
            "model",
            "output_file_id",
            "error_file_id",
            "in_progress_at",
            "expires_at",
            "finalizing_at",
            "completed_at",
            "failed_at",
            "expired_at",
            "cancelling_at",
            "cancelled_at",
            "usage",
        ):
            if row.get(name) is not None:
                out[name] = row[name]
        return out


class BatchPipeline(Pipeline):
    """The job that runs a batch (see the module's docstring); its only parameter is the batch id."""

    name = PIPELINE
    description = "Runs an OpenAI batch (POST /v1/batches submits these jobs)"
    Params = BatchParams

    def __init__(self, batches: Batches, lines: LineRunner) -> None:
        self.batches = batches
        self.store = batches.store
        self.uploads = batches.uploads
        self.lines = lines

    def info(self) -> PipelineInfo:
        return PipelineInfo(name=PIPELINE, plugin="loom", cls=BatchPipeline, instance=self, hidden=True)

    async def run(self, params: BatchParams, ctx: PipelineContext) -> dict[str, Any]:
        assert isinstance(ctx, JobContext), "the daemon's job runner runs batches"
        batch = self.store.get(params.batch_id)
        if batch["job_id"] != ctx.job_id:
            raise Conflict(f"batch {batch['id']} is run by job {batch['job_id']}, not {ctx.job_id}")
        if batch["status"] == VALIDATING:
            batch = await self._validate(batch)
            if batch["status"] == FAILED:
                raise InvalidRequest(f"batch {batch['id']} failed validation: {batch['errors'][0]['message']}")
        if batch["status"] in ENDED:
            return self._result(batch)
        final = {CANCELLING: CANCELLED, FINALIZING: COMPLETED}.get(batch["status"], COMPLETED)
        if batch["status"] == IN_PROGRESS:
            try:
                ctx.check()
                final = EXPIRED if await self._run_lines(batch, ctx) else COMPLETED
            except BaseException:
                if ctx.cancel_requested:  # cancelled: write what finished (a daemon stop leaves it to resume)
                    finalize(self.store, self.uploads, self.store.get(batch["id"]), CANCELLED)
                    raise Cancelled(f"batch {batch['id']} was cancelled") from None
                raise
        return self._result(finalize(self.store, self.uploads, self.store.get(batch["id"]), final))

    def _result(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {"batch_id": batch["id"], "status": batch["status"], "request_counts": self.store.counts(batch["id"])}

    async def _validate(self, batch: dict[str, Any]) -> dict[str, Any]:
        try:
            data = self.uploads.content(batch["input_file_id"], batch["owner"])
        except NotFound as e:
            errors = [batch_lines.error("file_not_found", e.message, param="input_file_id")]
            return self.store.update(batch["id"], status=FAILED, errors=errors)
        max_lines = self.batches.config.max_lines
        found, errors = await asyncio.to_thread(batch_lines.parse, data, batch["endpoint"], max_lines)
        if errors:
            log.warning("batch %s failed validation: %s", batch["id"], errors[0]["message"])
            return self.store.update(batch["id"], status=FAILED, errors=errors)
        models = {x.model for x in found}
        model = next(iter(models)) if len(models) == 1 and "" not in models else None
        await asyncio.to_thread(self.store.add_lines, batch["id"], found, status=IN_PROGRESS, model=model)
        return self.store.get(batch["id"])

    async def _run_lines(self, batch: dict[str, Any], ctx: JobContext) -> bool:
        """Run the lines without a result, model by model; True when the window ran out first."""
        pending = self.store.pending(batch["id"])
        counts = self.store.counts(batch["id"])
        done = counts["completed"] + counts["failed"]
        log.info("batch %s: %d of %d lines have run; running %d", batch["id"], done, counts["total"], len(pending))
        ctx.emit("batch", {"batch_id": batch["id"], "finished": done, "to_run": len(pending)})
        progress = _Progress(ctx, counts["total"], done)
        expired = False
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in pending:  # already ordered by model
            groups.setdefault(row["model"], []).append(row)
        for model, rows in groups.items():
            queue = iter(rows)

            async def worker(model: str = model, queue=queue) -> None:
                nonlocal expired
                for row in queue:
                    if time.time() >= batch["expires_at"]:
                        expired = True
                        return
                    ctx.check()
                    await self._line(batch, model, row, ctx)
                    progress.step()

            n = max(1, min(self.batches.config.concurrency, len(rows)))
            async with asyncio.TaskGroup() as group:
                for _ in range(n):
                    group.create_task(worker())
            if expired:
                break
        progress.report()
        return expired

    async def _line(self, batch: dict[str, Any], model: str, row: dict[str, Any], ctx: JobContext) -> None:
        request_id = f"req_{secrets.token_hex(12)}"
        try:
            body = await ctx.call_model(
                model, lambda rc: self.lines.run(batch["endpoint"], row["body"], rc, batch["owner"])
            )
            status, state = 200, DONE
            response: dict[str, Any] | None = {"status_code": 200, "request_id": request_id, "body": body}
            error = None
        except LoomError as e:
            if isinstance(e, Cancelled) and ctx.cancel_requested:
                raise
            status, state = self.lines.status_of(e), ERROR
            body = {"error": {"message": e.message, "type": e.type, "param": e.param, "code": e.code}}
            response = {"status_code": status, "request_id": request_id, "body": body}
            error = {"code": e.code, "message": e.message}
        line = {
            "id": f"batch_req_{secrets.token_hex(12)}",
            "custom_id": row["custom_id"],
            "response": response,
            "error": error,
        }
        self.store.finish_line(batch["id"], row["line"], state, status, request_id, msgspec.json.encode(line))


class _Progress:
    """The job's progress (lines run of all), reported at most every PROGRESS_INTERVAL_S."""

    def __init__(self, ctx: JobContext, total: int, done: int) -> None:
        self.ctx, self.total, self.done = ctx, total, done
        self.last = 0.0

    def step(self) -> None:
        self.done += 1
        if time.monotonic() - self.last >= PROGRESS_INTERVAL_S:
            self.report()

    def report(self) -> None:
        self.last = time.monotonic()
        percent = 100.0 * self.done / self.total if self.total else 100.0
        self.ctx.progress(percent, "running", f"{self.done}/{self.total} requests")


def finalize(store: BatchStore, uploads: UploadStore, batch: dict[str, Any], final: str) -> dict[str, Any]:
    """Write the output and error files of what has run and end the batch in ``final``. Run
    again after a restart it writes the same files (their ids follow from the batch's)."""
    batch_id = batch["id"]
    if final == COMPLETED:
        batch = store.update(batch_id, status=FINALIZING)
    key = batch_id.removeprefix("batch_")
    done = store.results(batch_id, DONE)
    failed = store.results(batch_id, ERROR)
    fields: dict[str, Any] = {"status": final}
    unrun: list[bytes] = []
    if final == EXPIRED:  # OpenAI writes the lines the window left unrun to the error file
        for row in store.pending(batch_id):
            error = {"code": "batch_expired", "message": "This line could not be run before the batch expired"}
            unrun.append(
                msgspec.json.encode(
                    {
                        "id": f"batch_req_{secrets.token_hex(12)}",
                        "custom_id": row["custom_id"],
                        "response": None,
                        "error": error,
                    }
                )
            )
    files: dict[str, Any] = {"file_id": f"file-out{key}", "expires_in": batch["output_expires_in"]}
    errors_file: dict[str, Any] = {"file_id": f"file-err{key}", "expires_in": batch["output_expires_in"]}
    if done:
        data = b"".join(r["response"] + b"\n" for r in done)
        f = uploads.create(data, f"{batch_id}_output.jsonl", BATCH_OUTPUT, batch["owner"], **files)
        fields["output_file_id"] = f["id"]
    if failed or unrun:
        data = b"".join(r["response"] + b"\n" for r in failed) + b"".join(u + b"\n" for u in unrun)
        f = uploads.create(data, f"{batch_id}_error.jsonl", BATCH_OUTPUT, batch["owner"], **errors_file)
        fields["error_file_id"] = f["id"]
    if done:
        fields["usage"] = _usage(done)
    return store.update(batch_id, **fields)


def _usage(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The batch's tokens, summed over its answers (chat and completions count prompt and
    completion tokens, responses input and output tokens, embeddings prompt tokens)."""
    prompt = completion = cached = 0
    for r in rows:
        usage = (msgspec.json.decode(r["response"])["response"]["body"] or {}).get("usage") or {}
        prompt += usage.get("prompt_tokens") or usage.get("input_tokens") or 0
        completion += usage.get("completion_tokens") or usage.get("output_tokens") or 0
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
        cached += details.get("cached_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }
