"""The job runner: accepts pipeline jobs, runs each as an asyncio task, cancels and resumes them.

Life of a job: ``queued`` (accepted, 202) -> ``running`` -> ``succeeded`` | ``failed`` |
``cancelled``. A job waits ``queued`` until the budget of running jobs has room for it (see
:mod:`.admission`: by priority, then age, with its position in its JSON and in ``position``
events); a queued job that is cancelled ends at once, having run nothing. A daemon that stops
(or is killed) with jobs queued or running leaves them ``interrupted``: at shutdown directly,
after a SIGKILL when the next daemon starts. ``resume`` takes an
interrupted, failed or cancelled job back to ``queued`` and runs its pipeline again from the top;
finished steps return their stored results, so the work continues from the last finished step.

At start-up the ``interrupted`` jobs resume on their own (``[jobs] resume_interrupted``), except a
job that has already run ``resume_limit`` times (it may be what brought the daemon down) and a
job started with a per-request upstream key: the key was never stored, so that job waits for a
``resume`` that sends the same header again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

import msgspec
import pluggy
from loom.sdk.errors import (
    AuthenticationFailed,
    Cancelled,
    Conflict,
    InvalidRequest,
    LoomError,
    NotFound,
    PluginError,
    StorageError,
    Unavailable,
)
from loom.sdk.pipelines import Pipeline

from .. import credentials as upstream_keys
from ..atomic import storage_error
from ..config import JobsConfig
from ..plugin_manager import PluginInfo, collect
from ..principals import UNOWNED
from ..scheduler import current_principal
from . import metadata
from .admission import Admission, Budget, ModelRoom
from .context import JobContext, PipelineServices
from .hub import EventHub
from .store import (
    CANCELLED,
    FAILED,
    FINISHED,
    INTERRUPTED,
    QUEUED,
    RESUMABLE,
    RUNNING,
    SUCCEEDED,
    Event,
    JobStore,
)
from .usage import Usage

log = logging.getLogger("loom.jobs")
#: How long a cancelled job's model calls get to stop on their own before the task is cancelled.
CANCEL_GRACE_S = 10.0
#: How often the end of a job the store could not record (a full disk) is tried again.
RECORD_RETRY_S = 2.0
#: How often, at most, a running job's progress rewrites its metadata.json.
METADATA_INTERVAL_S = 2.0
#: The owner of a job no principal submitted (a daemon without keys: every client is the same owner).
ANONYMOUS = UNOWNED


@dataclass
class PipelineInfo:
    name: str
    plugin: str
    cls: type[Pipeline]
    instance: Pipeline
    #: Run by the daemon for an API of its own (a batch), not started by name: left out of the
    #: pipeline lists and refused by ``POST /v1/pipelines/{name}``.
    hidden: bool = False

    @property
    def description(self) -> str:
        return self.cls.description or (self.cls.__doc__ or "").strip().split("\n")[0]


def collect_pipelines(pm: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> dict[str, PipelineInfo]:
    """Pipeline name -> info; a duplicate name or a malformed class stops start-up. Checked here,
    once, so nothing after registration probes a pipeline: it is a :class:`loom.sdk.Pipeline`
    with a name and a Params Struct."""
    pipelines: dict[str, PipelineInfo] = {}
    for plugin, cls in collect(pm, "register_pipelines"):
        # The class attributes the SDK declares without a value are read as a registration check.
        name = getattr(cls, "name", None)
        params = getattr(cls, "Params", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r} registered a pipeline without a name: {cls!r}")
        if not (isinstance(cls, type) and issubclass(cls, Pipeline)):
            raise PluginError(f"pipeline {name!r} (plugin {plugin!r}) must subclass loom.sdk.Pipeline")
        if not (isinstance(params, type) and issubclass(params, msgspec.Struct)):
            raise PluginError(f"pipeline {name!r} (plugin {plugin!r}) needs a msgspec Struct as Params")
        if not asyncio.iscoroutinefunction(cls.run):
            raise PluginError(f"pipeline {name!r} (plugin {plugin!r}) needs an async run(params, ctx)")
        if name in pipelines:
            raise PluginError(
                f"pipeline {name!r} is registered by two plugins: {pipelines[name].plugin!r} and {plugin!r}"
            )
        pipelines[name] = PipelineInfo(name=name, plugin=plugin, cls=cls, instance=cls())
        if plugin in infos:
            infos[plugin].pipelines.append(name)
    return pipelines


class JobRunner:
    def __init__(
        self,
        services: PipelineServices,
        store: JobStore,
        pipelines: dict[str, PipelineInfo],
        config: JobsConfig | None = None,
    ) -> None:
        self.services = services
        self.store = store
        self.pipelines = pipelines
        #: ``[jobs]``: by default the daemon's own (the scheduler holds the whole config).
        self.config = config if config is not None else services.router.scheduler.config.jobs
        #: Which accepted jobs run now (sized from the models' slots in ``start``).
        self.admission = Admission(self._budget(), report=self._report_position)
        #: Back-pressure for running jobs' model calls (see ``admission``).
        self.room = ModelRoom(self._room_limit)
        self.hub = EventHub(store)
        self._tasks: dict[str, asyncio.Task] = {}
        self._contexts: dict[str, JobContext] = {}
        self._run_started: dict[str, float] = {}
        #: Jobs cancelled between acceptance and the start of their task.
        self._cancel_before_start: set[str] = set()
        #: job id -> the per-request upstream keys of its current run (memory only, dropped at its end).
        self._credentials: dict[str, dict[str, str]] = {}
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._background: set[asyncio.Task] = set()
        #: job id -> when progress last wrote its metadata.json (monotonic; dropped at its end).
        self._metadata_written: dict[str, float] = {}

    # --- lifecycle --------------------------------------------------------------------------

    def start(self, *, resume: bool = False, resume_limit: int = 3) -> list[str]:
        """Mark what a dead daemon left running as ``interrupted``; with ``resume``, resume every
        interrupted job that can be (see the module's docstring). Returns the resumed ids."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.admission.budget = self._budget()  # models added since __init__ count too
        for job_id in self.store.mark_interrupted():
            log.warning("job %s was interrupted by a daemon stop", job_id)
            self.emit(job_id, "state", {"state": INTERRUPTED})
            self._write_metadata(job_id)
        resumed = []
        for job in reversed(self.store.list_jobs(states=[INTERRUPTED], limit=10_000)):
            job_id, why = job["id"], None
            if not resume:
                why = "[jobs] resume_interrupted is off"
            elif job["upstream_keys"]:
                why = f"it was started with {', '.join(job['upstream_keys'])}, which Loom does not store"
            elif job["attempts"] >= resume_limit:
                why = f"it has run {job['attempts']} times ([jobs] resume_limit = {resume_limit})"
            elif job["pipeline"] not in self.pipelines:
                why = f"pipeline '{job['pipeline']}' is not installed"
            if why is not None:
                log.warning("job %s is interrupted; POST /v1/jobs/%s/resume continues it (%s)", job_id, job_id, why)
                continue
            log.info("resuming job %s (%s), interrupted by a daemon stop", job_id, job["pipeline"])
            self.resume(job_id, message="resumed at start-up")
            resumed.append(job_id)
        return resumed

    async def stop(self) -> None:
        """Stop running jobs; they are left ``interrupted`` with their finished steps."""
        self._stopping = True
        self.admission.close()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.hub.close()

    def is_active(self, job_id: str) -> bool:
        return job_id in self._tasks

    # --- submitting -------------------------------------------------------------------------

    def pipeline(self, name: str, *, hidden: bool = False) -> PipelineInfo:
        """The pipeline ``name``; one the daemon runs for itself only with ``hidden``."""
        info = self.pipelines.get(name)
        if info is None or (info.hidden and not hidden):
            have = ", ".join(self.public_pipelines()) or "none"
            raise NotFound(f"No pipeline named '{name}' (available: {have})", param="name")
        return info

    def public_pipelines(self) -> list[str]:
        """The names of the pipelines a client may start, sorted."""
        return sorted(name for name, info in self.pipelines.items() if not info.hidden)

    def submit(
        self,
        name: str,
        params: msgspec.Struct,
        credentials: dict[str, str] | None = None,
        *,
        owner: str = ANONYMOUS,
        priority: int = 0,
    ) -> dict:
        """Accept a job whose ``params`` were already decoded strictly; it runs as soon as the
        budget of running jobs has room (at once when it has).

        ``credentials``: the request's upstream keys (``X-...-API-Key`` headers), used by this
        job's calls while it runs and never stored; the job records only their header names.
        ``owner`` (the principal that submitted it, :mod:`loom.daemon.principals`) owns it: a
        user sees only its own jobs. It also bounds how many jobs one client may have queued: past ``[jobs] max_queued_per_owner`` (or ``max_queued`` for everyone) this
        raises QueueFull (429 with Retry-After) before anything is stored. Among queued jobs a
        higher ``priority`` runs first, then the older."""
        if self._stopping:
            raise Unavailable("the daemon is shutting down")
        info = self.pipeline(name, hidden=True)
        self.admission.check_room(owner)
        job_id = secrets.token_hex(6)
        created = time.localtime()
        output_dir = time.strftime("output/%Y-%m-%d/ses-%H%M%S-", created) + job_id
        folder = self.services.files.root / output_dir
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise storage_error(e, folder) from None
        keys = dict(credentials or {})
        job = self.store.create_job(
            job_id,
            name,
            info.plugin,
            msgspec.json.encode(params),
            output_dir,
            sorted(keys),
            owner=owner,
            priority=priority,
        )
        self._queue(job, keys)
        return self.get(job_id)

    def resume(self, job_id: str, credentials: dict[str, str] | None = None, *, message: str = "resumed") -> dict:
        """Run an interrupted, failed or cancelled job again from its last finished step. A job
        started with upstream keys needs the same headers again (``credentials``)."""
        job = self.get(job_id)
        if self.is_active(job_id) or job["state"] not in RESUMABLE:
            raise Conflict(f"job {job_id} is {job['state']}; only interrupted, failed or cancelled jobs can be resumed")
        if job["pipeline"] not in self.pipelines:
            raise Conflict(f"job {job_id} needs pipeline '{job['pipeline']}', which is not installed")
        keys = dict(credentials or {})
        missing = [name for name in job["upstream_keys"] or [] if name not in keys]
        if missing:
            raise AuthenticationFailed(
                f"job {job_id} was started with the {', '.join(missing)} header; Loom never stores such "
                f"keys, so send the same header again to resume it",
                param=missing[0],
                code="upstream_key_missing",
            )
        if self._stopping:
            raise Unavailable("the daemon is shutting down")
        self.store.update_job(job_id, state=QUEUED, stage="queued", message=message, error=None, finished_at=None)
        steps, _ = self.store.step_stats(job_id)
        self._queue(self.get(job_id), keys, {"resumed": True, "finished_steps": steps})
        return self.get(job_id)

    async def wait(self, job_id: str, timeout: float) -> dict:
        """The job once it has ended, or as it is after ``timeout`` seconds (it goes on running
        either way: a client that stops waiting does not stop the job)."""
        task = self._tasks.get(job_id)
        if task is not None and timeout > 0:
            await asyncio.wait([task], timeout=timeout)  # never raises, never cancels the job
        return self.get(job_id)

    def set_metadata(self, job_id: str, fields: dict[str, Any]) -> None:
        """Merge a pipeline's own ``metadata.json`` fields; written out with the next report."""
        try:
            msgspec.json.encode(fields)
        except (TypeError, msgspec.EncodeError) as e:
            raise InvalidRequest(f"metadata fields must be JSON-encodable: {e}") from None
        job = self.get(job_id)
        self.store.update_job(job_id, metadata={**(job["metadata"] or {}), **fields})

    async def cancel(self, job_id: str, wait: float = 5.0) -> dict:
        job = self.get(job_id)
        if job["state"] in FINISHED:
            raise Conflict(f"job {job_id} is already {job['state']}")
        task = self._tasks.get(job_id)
        if task is None:  # interrupted: nothing runs, it just will not be resumed
            self._finish_idle(job_id, CANCELLED)
            return self.get(job_id)
        if self.admission.remove(job_id):  # queued: it never started, so it ends now
            task.cancel()
            self._finish_idle(job_id, CANCELLED)
            return self.get(job_id)
        ctx = self._contexts.get(job_id)
        if ctx is not None:
            ctx.cancel()
        else:
            self._cancel_before_start.add(job_id)
        self.emit(job_id, "cancelling", {})

        async def hard_stop() -> None:
            await asyncio.sleep(CANCEL_GRACE_S)
            if not task.done():
                task.cancel()

        stopper = asyncio.get_running_loop().create_task(hard_stop())
        self._background.add(stopper)
        stopper.add_done_callback(self._background.discard)
        try:
            await asyncio.wait_for(asyncio.shield(task), wait)
        except (TimeoutError, asyncio.CancelledError, Exception):
            pass
        return self.get(job_id)

    def get(self, job_id: str, owner: str | None = None) -> dict:
        """The job; NotFound if there is none, or (``owner`` given: a user's scope) if it is
        another's: the same answer, so a guessed id tells nothing."""
        job = self.store.get_job(job_id)
        if job is None or (owner is not None and (job.get("owner") or UNOWNED) != owner):
            raise NotFound(f"No job with id '{job_id}'", param="id")
        return job

    # --- events -----------------------------------------------------------------------------

    def emit(self, job_id: str, type: str, data: dict[str, Any]) -> Event:
        if not isinstance(data, dict):
            raise InvalidRequest(f"event data must be an object, got {type(data).__name__}")
        event = self.store.append_event(job_id, type, data)
        if type == "lineage" and "id" in data:
            self.store.upsert_lineage(job_id, data)
        if self._loop is None or threading.get_ident() == self._loop_thread:
            self.hub.publish(event)
        else:  # a pipeline reporting from a worker thread: deliver on the loop
            self._loop.call_soon_threadsafe(self.hub.publish, event)
        return event

    def progress(self, ctx: JobContext, percent: float, stage: str, message: str) -> None:
        self.store.update_job(
            ctx.job_id,
            progress=percent,
            stage=stage,
            message=message,
            usage=ctx.usage.to_dict(),
            timings=self._timings(ctx.job_id),
        )
        self.emit(ctx.job_id, "progress", {"progress": round(percent, 2), "stage": stage, "message": message})
        # metadata.json follows progress at most every METADATA_INTERVAL_S from the run's start
        # (the job's end always writes it, so a quick job writes it once): rewriting a file costs
        # a flush on ext4 (a file renamed over another is flushed), and a quick job reports
        # progress several times a second: a burst of jobs was bound by those flushes.
        now = time.monotonic()
        if now - self._metadata_written.get(ctx.job_id, float("-inf")) >= METADATA_INTERVAL_S:
            self._metadata_written[ctx.job_id] = now
            self._write_metadata(ctx.job_id)

    def step_finished(self, ctx: JobContext, key: str, seconds: float) -> None:
        self.store.update_job(ctx.job_id, usage=ctx.usage.to_dict(), timings=self._timings(ctx.job_id))
        self.emit(ctx.job_id, "step", {"key": key, "seconds": round(seconds, 4), "attempt": ctx.attempt})

    def position(self, job_id: str) -> int | None:
        """Where a queued job stands among the queued (1: it starts next); None if not queued."""
        return self.admission.position(job_id)

    # --- admission --------------------------------------------------------------------------

    def _budget(self) -> Budget:
        """``[jobs]``'s bounds, "auto" sized from the configured models' slots."""
        c = self.config
        if c.max_running == "auto":
            slots = 0
            scheduler = self.services.router.scheduler
            for entry in self.services.registry:
                try:
                    slots += min(16, scheduler.slots(entry))
                except Exception:  # a provider that cannot say: it serves one at a time
                    slots += 1
            max_running = min(64, max(2, 2 * slots))
        else:
            max_running = c.max_running
        if c.max_running_per_pipeline == "auto":
            per_pipeline = max(1, max_running * 3 // 4)
        else:
            per_pipeline = c.max_running_per_pipeline
        return Budget(
            max_running=max_running,
            per_pipeline=dict(c.pipelines),
            pipeline_default=per_pipeline,
            max_queued=c.max_queued,
            max_queued_per_owner=c.max_queued_per_owner,
        )

    def _room_limit(self, model: str) -> int:
        """How many of the jobs' calls to ``model`` may be in the scheduler at once: its slots
        plus half its queue limit (the other half is left to interactive requests)."""
        scheduler = self.services.router.scheduler
        try:
            entry = self.services.registry.get(model)
        except LoomError:
            return 1  # an unknown model: its call fails with the router's own error
        max_queue = entry.config.max_queue or scheduler.config.daemon.limits.max_queue
        return scheduler.slots(entry) + max_queue // 2

    def _queue(self, job: dict, credentials: dict[str, str], extra: dict[str, Any] | None = None) -> None:
        """Put an accepted (or resumed) job in the queue and start its task, which waits there."""
        job_id = job["id"]
        waiting = self.admission.enqueue(
            job_id, job["pipeline"], job.get("owner") or ANONYMOUS, job.get("priority") or 0, job["created_at"]
        )
        self.emit(job_id, "state", {"state": QUEUED, "position": waiting.reported, **(extra or {})})
        self._start_task(job_id, credentials, waiting.admitted)

    def _report_position(self, job_id: str, position: int) -> None:
        self.emit(job_id, "position", {"position": position, "queued": len(self.admission.waiting)})

    # --- running ----------------------------------------------------------------------------

    def _start_task(self, job_id: str, credentials: dict[str, str], admitted: asyncio.Future[None]) -> None:
        # The task starts without the submitting request's context: its calls get the keys it was
        # handed, explicitly, and nothing else from the request.
        loop = asyncio.get_running_loop()
        task = loop.create_task(
            self._execute(job_id, admitted), name=f"loom-job-{job_id}", context=upstream_keys.detached_context()
        )
        self._tasks[job_id] = task
        self._credentials[job_id] = credentials

        def done(t: asyncio.Task, j: str = job_id) -> None:
            if self._tasks.get(j) is t:
                self._tasks.pop(j, None)
                self._credentials.pop(j, None)

        task.add_done_callback(done)

    async def _execute(self, job_id: str, admitted: asyncio.Future[None]) -> None:
        try:
            await admitted
        except asyncio.CancelledError:
            # Cancelled while queued (``cancel`` has recorded it), or the daemon stops: a job that
            # never started is left ``interrupted`` like a running one, and resumes the same way.
            if not self.admission.remove(job_id):
                self.admission.release(job_id)  # admitted, then cancelled before it could start
            if self._stopping and self.get(job_id)["state"] == QUEUED:
                message = "the daemon stopped before the job started"
                self.store.update_job(job_id, state=INTERRUPTED, stage=INTERRUPTED, message=message)
                self.emit(job_id, "state", {"state": INTERRUPTED})
            return
        try:
            await self._run(job_id)
        except sqlite3.Error as e:
            # The store could not record the job (a full disk): nothing else would, so the job
            # would show "running" until a restart. Record its failure as soon as there is room.
            log.error("job %s: the job store could not record it (%s); recording it failed when it can", job_id, e)
            error = StorageError(f"No space left to record job {job_id} ({e}): free some space in the data dir")
            await self._record_failure(job_id, _error_body(error, None))
        finally:
            self.admission.release(job_id)

    async def _record_failure(self, job_id: str, error: dict[str, Any]) -> None:
        while not self._stopping:
            try:
                self.store.update_job(
                    job_id, state=FAILED, stage=FAILED, error=error, message=error["message"], finished_at=time.time()
                )
                self.emit(job_id, "state", {"state": FAILED, "error": error})
            except sqlite3.Error:
                await asyncio.sleep(RECORD_RETRY_S)
                continue
            self._write_metadata(job_id)
            return

    async def _run(self, job_id: str) -> None:
        job = self.get(job_id)
        # Its model calls count for its owner in the per-principal metrics (a job resumed at
        # start-up has no request to say whose it is). The task has a context of its own.
        current_principal.set(job.get("owner") or "anonymous")  # the metrics' label for no principal
        tracing = self.services.tracing
        if tracing is None:
            await self._run_job(job_id)
            return
        with tracing.job(job_id, job["pipeline"], job["attempts"] + 1):
            await self._run_job(job_id)

    async def _run_job(self, job_id: str) -> None:
        job = self.get(job_id)
        info = self.pipelines[job["pipeline"]]
        attempt = job["attempts"] + 1
        self.store.update_job(
            job_id, state=RUNNING, stage="starting", attempts=attempt, started_at=job["started_at"] or time.time()
        )
        job = self.get(job_id)
        ctx = JobContext(
            self.services,
            self,
            self.store,
            job,
            Usage(job["usage"]),
            crash_retries=info.cls.worker_crash_retries,
            credentials=self._credentials.get(job_id),
        )
        if job_id in self._cancel_before_start:
            self._cancel_before_start.discard(job_id)
            ctx.cancel()
        self._contexts[job_id] = ctx
        self._run_started[job_id] = self._metadata_written[job_id] = time.monotonic()
        self.emit(job_id, "state", {"state": RUNNING, "attempt": attempt})
        log.info("job %s (%s) started%s", job_id, info.name, f", attempt {attempt}" if attempt > 1 else "")
        try:
            params = msgspec.json.decode(msgspec.json.encode(job["params"]), type=info.cls.Params)
            result = await info.instance.run(params, ctx)
            result = msgspec.json.decode(msgspec.json.encode(result))
            await ctx.publish_outputs()  # an output store that cannot take them fails the job
        except asyncio.CancelledError:
            self._finish(ctx, CANCELLED if ctx.cancel_requested and not self._stopping else INTERRUPTED)
        except BaseException as exc:
            error = _root_cause(exc)
            if ctx.cancel_requested and isinstance(error, (Cancelled, asyncio.CancelledError)):
                self._finish(ctx, CANCELLED)
            elif self._stopping:
                self._finish(ctx, INTERRUPTED)
            else:
                if not isinstance(error, LoomError):
                    log.error("job %s (%s) crashed", job_id, info.name, exc_info=error)
                self._finish(ctx, FAILED, error=_error_body(error, ctx.failed_step))
            if not isinstance(exc, Exception):
                raise
        else:
            self._finish(ctx, SUCCEEDED, result=result)
        finally:
            self._contexts.pop(job_id, None)

    def _timings(self, job_id: str) -> dict[str, Any]:
        job = self.store.get_job(job_id) or {}
        saved = (job.get("timings") or {}).get("run_seconds_before", 0.0)
        started = self._run_started.get(job_id)
        current = time.monotonic() - started if started is not None else 0.0
        return {"run_seconds_before": saved, "run_seconds": round(saved + current, 4)}

    def _finish(self, ctx: JobContext, state: str, *, result: Any = None, error: dict | None = None) -> None:
        job_id = ctx.job_id
        timings = self._timings(job_id)
        timings["run_seconds_before"] = timings["run_seconds"]
        self._run_started.pop(job_id, None)
        fields: dict[str, Any] = {
            "state": state,
            "usage": ctx.usage.to_dict(),
            "timings": timings,
            "stage": {SUCCEEDED: "done"}.get(state, state),
        }
        if state in FINISHED:
            fields["finished_at"] = time.time()
        if state == SUCCEEDED:
            fields.update(progress=100.0, result=result, message="")
        if error is not None:
            fields.update(error=error, message=error["message"])
        self.store.update_job(job_id, **fields)
        self._metadata_written.pop(job_id, None)
        metadata_rel = self._write_metadata(job_id)
        if metadata_rel is not None and state in FINISHED:
            self.services.storage.publish_quietly(metadata_rel)  # its final state, best effort
        data: dict[str, Any] = {"state": state}
        if error is not None:
            data["error"] = error
        self.emit(job_id, "state", data)
        why = f": {error['message']}" if error is not None else ""
        log.log(
            logging.WARNING if state == FAILED else logging.INFO,
            "job %s (%s) %s after %.1f s%s",
            job_id,
            ctx.pipeline,
            state,
            timings["run_seconds"],
            why,
        )

    def _finish_idle(self, job_id: str, state: str) -> None:
        self.store.update_job(job_id, state=state, stage=state, finished_at=time.time())
        self._write_metadata(job_id)
        self.emit(job_id, "state", {"state": state})

    def _write_metadata(self, job_id: str) -> str | None:
        job = self.store.get_job(job_id)
        if job is None:
            return None
        try:
            meta = metadata.build(
                job, self.store.lineage(job_id), self.store.artifacts(job_id), self.store.step_stats(job_id)
            )
            rel, data = metadata.write(self.services.files.root, job, meta)
        except (OSError, StorageError) as e:  # the job's state is in the store all the same
            log.error("could not write metadata.json for job %s: %s", job_id, e)
            return None
        self.store.put_artifact(
            job_id,
            rel,
            metadata.NAME,
            "application/json",
            len(data),
            hashlib.sha256(data).hexdigest(),
            {"kind": "metadata"},
        )
        return rel


def _leaves(exc: BaseException):
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _root_cause(exc: BaseException) -> BaseException:
    """The error to report from what may be an exception group (TaskGroup): a real failure
    first, then a cancellation, then anything."""
    leaves = list(_leaves(exc))
    for wanted in (
        lambda e: isinstance(e, LoomError) and not isinstance(e, Cancelled),
        lambda e: isinstance(e, Exception) and not isinstance(e, Cancelled),
        lambda e: isinstance(e, Cancelled),
    ):
        for e in leaves:
            if wanted(e):
                return e
    return leaves[0]


def _error_body(error: BaseException, step: str | None) -> dict[str, Any]:
    if isinstance(error, sqlite3.OperationalError) and "full" in str(error):
        error = StorageError(
            f"No space left on the device for the job store ({error}): free some space in the data dir"
        )
    if isinstance(error, LoomError):
        body = {"type": error.type, "code": error.code, "message": error.message, "param": error.param}
    else:
        body = {
            "type": "server_error",
            "code": "internal_error",
            "message": f"Internal error: {type(error).__name__}: {error}",
            "param": None,
        }
    body["step"] = step
    return body
