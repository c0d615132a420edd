"""``JobContext``: the daemon's :class:`~loom.sdk.pipelines.PipelineContext`.

A job reaches only the services in :class:`PipelineServices`. Every model call goes through the
router at ``Priority.PIPELINE`` with a ``RunContext`` the
job can cancel; token usage and time per capability are added to the job's totals. Load never
fails a call: it waits for room among the jobs' calls to its model (``JobRunner.room``), and a
call that meets the model's full queue waits for room and is tried again (see ``admission``). ``step``
memoises results in the store, which is what makes ``resume`` continue from the last finished
step: a resumed job runs ``Pipeline.run`` from the top and finished steps return at once.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import mimetypes
import os
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import msgspec
from loom.sdk import calls, tracing
from loom.sdk.errors import (
    Cancelled,
    CapabilityNotSupported,
    InvalidRequest,
    LoomError,
    NotFound,
    ProviderError,
    QueueFull,
    RateLimited,
    Unavailable,
)
from loom.sdk.pipelines import PipelineContext
from loom.sdk.protocols import ImageJob, RunContext, VisionScores
from loom.sdk.types import Capability, ChatCompletionRequest

from ..atomic import write_atomic
from ..config import VISION_ROLES, Routes
from ..files import FileStore
from ..models import ModelEntry, ModelRegistry
from ..questions import Questions
from ..rag import RagStore
from ..records import RecordStore
from ..routing import ModelRouter
from ..scheduler import Priority
from ..storage.service import Storage
from . import search
from .previews import JOB_PREVIEWS, JobPreviews
from .retry import retrying_crashes
from .usage import Usage

if TYPE_CHECKING:
    from ..tracing import Tracing
    from .admission import ModelRoom
    from .store import Event, JobStore

T = TypeVar("T")
log = logging.getLogger("loom.jobs")
_FOLDER = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127})?$")


@dataclass(frozen=True)
class PipelineServices:
    """What a running pipeline reaches, and nothing more: models through the router (with the
    registry and the configured routes to pick them), files, retrieval, records, and a person
    to ask."""

    router: ModelRouter
    registry: ModelRegistry
    routes: Routes
    files: FileStore
    #: The output store the job's artefacts are published to (and the URLs of its files).
    storage: Storage
    rag: RagStore
    records: RecordStore
    #: Questions for a person (``ask_preference``), answered on the web UI or the API.
    questions: Questions
    #: The daemon's tracer when traces are on: a job's run is a span, its steps its children.
    tracing: Tracing | None = None


class JobEvents(Protocol):
    """What a running job tells the runner (which stores it, publishes it and keeps the job's
    totals), and the room its model calls share with the other jobs'. :class:`JobRunner` is one."""

    #: Room among the jobs' calls to each model (``_with_room``).
    room: ModelRoom

    def emit(self, job_id: str, type: str, data: dict[str, Any]) -> Event: ...

    def progress(self, ctx: JobContext, percent: float, stage: str, message: str) -> None: ...

    def step_finished(self, ctx: JobContext, key: str, seconds: float) -> None: ...

    def set_metadata(self, job_id: str, fields: dict[str, Any]) -> None: ...


class JobContext(PipelineContext):
    """The daemon's context for one run of one job."""

    def __init__(
        self,
        services: PipelineServices,
        events: JobEvents,
        store: JobStore,
        job: dict,
        usage: Usage,
        *,
        crash_retries: int,
        credentials: dict[str, str] | None = None,
    ) -> None:
        self.services = services
        self.events = events
        self.store = store
        self.job_id: str = job["id"]
        self.pipeline: str = job["pipeline"]
        self.params: Any = job.get("params")
        self.output_dir: str = job["output_dir"]
        #: The principal whose job it is: what it stores (records, retrieval items) is theirs.
        self.owner: str = job.get("owner") or ""
        self.attempt: int = job["attempts"]
        self.usage = usage
        #: The per-request upstream keys the job was started (or resumed) with: in memory only,
        #: handed to each of its model calls (``RunContext.credentials``).
        self.credentials: dict[str, str] = dict(credentials or {})
        self.cancel_requested = False
        #: The key of the first step that failed (reported with the job's error).
        self.failed_step: str | None = None
        self._seen_steps: set[str] = set()
        self._calls: set[RunContext] = set()
        #: Model calls whose worker crashed are run again this many times (see ``retry``): the
        #: pipeline's ``worker_crash_retries``.
        self.crash_retries = crash_retries
        #: Waits on a person (``ask_preference``), cancelled with the job.
        self._waits: set[asyncio.Task] = set()
        #: This run's uploads to the output store (none with the local store).
        self.outputs = services.storage.batch()
        #: The previews of the images it makes (the latest shown on its page).
        self.previews = JobPreviews(self)

    # --- durability -------------------------------------------------------------------------

    async def step(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` once per job; its result is stored as JSON and returned decoded (so a first
        run and a resumed one see the same plain values: dicts, lists, str, numbers)."""
        self.check()
        if key in self._seen_steps:
            # A second call would silently get the first one's result: a pipeline bug.
            raise InvalidRequest(f"step key {key!r} is used twice in one run; step keys must be unique")
        self._seen_steps.add(key)
        stored = self.store.get_step(self.job_id, key)
        if stored is not None:
            return msgspec.json.decode(stored)
        started = time.time()
        try:
            with tracing.span(f"step {key}", {"loom.step": key}):
                result = await fn()
        except BaseException:
            if self.failed_step is None:
                self.failed_step = key
            raise
        try:
            raw = msgspec.json.encode(result)
        except (TypeError, msgspec.EncodeError) as e:
            self.failed_step = self.failed_step or key
            raise InvalidRequest(
                f"step {key!r} returned {type(result).__name__}, which is not JSON-encodable: {e}"
            ) from None
        finished = time.time()
        self.store.put_step(self.job_id, key, raw, started, finished, self.attempt)
        self.events.step_finished(self, key, finished - started)
        return msgspec.json.decode(raw)

    def _progress(self, percent: float, stage: str, message: str) -> None:
        self.events.progress(self, max(0.0, min(100.0, float(percent))), stage, message)

    def emit(self, type: str, data: dict[str, Any]) -> None:
        self.events.emit(self.job_id, type, data)

    def set_metadata(self, fields: dict[str, Any]) -> None:
        """Merge ``fields`` into the job's pipeline metadata (written into ``metadata.json``)."""
        if not isinstance(fields, dict):
            raise InvalidRequest(f"metadata must be an object, got {type(fields).__name__}")
        self.events.set_metadata(self.job_id, fields)

    def check(self) -> None:
        if self.cancel_requested:
            raise Cancelled(f"job {self.job_id} was cancelled")

    def cancel(self) -> None:
        """Stop at the next step; model calls in flight stop at their next safe point."""
        self.cancel_requested = True
        for call in list(self._calls):
            call.cancel()
        for wait in list(self._waits):
            wait.cancel()

    # --- artefacts --------------------------------------------------------------------------

    def _save_artifact(self, name: str, data: bytes, meta: dict[str, Any] | None) -> str:
        if not _NAME.match(name) or ".." in name:
            raise InvalidRequest(f"artifact name {name!r} must be a plain file name (optionally one folder deep)")
        rel = f"{self.output_dir}/{name}"
        path = self.services.files.root / rel
        self.outputs.check()  # an earlier upload failed: the job fails now, with storage_error
        write_atomic(path, data)  # a reader (or a SIGKILL) never sees half a file
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        digest = hashlib.sha256(data).hexdigest()
        self.store.put_artifact(self.job_id, rel, name, media_type, len(data), digest, meta)
        try:  # searchable by text (GET /v1/artifacts?q=); never worth failing the save for
            body = search.body_for(name, media_type, data, meta, self.params)
            self.store.index_text(self.job_id, rel, body)
        except Exception:
            log.exception("could not index artefact %s for search", rel)
        self.outputs.add(rel)  # published in the background; the job's end waits for it
        return rel

    def read_artifact(self, path: str) -> bytes:
        try:
            return self.services.files.resolve(path).read_bytes()
        except NotFound:
            raise NotFound(f"job {self.job_id} has no artifact at {path!r}", param="path") from None

    def keep_artifact(self, path: str, folder: str) -> str:
        if not _FOLDER.match(folder):
            raise InvalidRequest(f"folder {folder!r} must be lowercase letters, digits, '-' or '_'")
        source = self.services.files.resolve(path)
        rel = f"images/{folder}/{self.job_id}-{source.name}"
        target = self.services.files.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            try:  # a hard link costs no space and survives the job folder's deletion
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
        self.outputs.add(rel)
        return rel

    async def publish_outputs(self) -> None:
        """Wait for this run's uploads to the output store (StorageError when one failed). A
        resumed run also publishes what earlier runs saved (their uploads may be what failed):
        the job's artefacts and the files it kept."""
        if self.attempt > 1 and self.services.storage.remote:
            root = self.services.files.root
            earlier = [a["path"] for a in self.store.artifacts(self.job_id)]
            earlier += [p.relative_to(root).as_posix() for p in root.glob(f"images/*/{self.job_id}-*")]
            for rel in earlier:
                if rel not in self.outputs and not rel.endswith("/metadata.json") and (root / rel).is_file():
                    self.outputs.add(rel)
        await self.outputs.wait()

    # --- retrieval and records --------------------------------------------------------------

    async def _rag_add(self, collection: str, vector: list[float], model: str, item: dict[str, Any]) -> dict[str, Any]:
        self.check()
        item = {**item, "job_id": self.job_id, "pipeline": self.pipeline, "owner": self.owner}
        added = await asyncio.to_thread(self.services.rag.add, collection, [vector], [item], model=model)
        return added[0]

    async def _rag_search(self, collection: str, vector: list[float], model: str, k: int) -> list[dict[str, Any]]:
        self.check()
        # A principal's job retrieves among that principal's items; a job no principal owns (a
        # daemon without keys) among all of them, through the index.
        owner = self.owner or None
        return await asyncio.to_thread(self.services.rag.search, collection, vector, model=model, k=k, owner=owner)

    def record_get(self, collection: str, key: str) -> dict[str, Any] | None:
        # The job's owner's records: each principal names its own (principals.py).
        return self.services.records.get(collection, key, self.owner)

    def _record_upsert(
        self, collection: str, key: str, fields: dict[str, Any] | None, append: dict[str, list[Any]] | None
    ) -> dict[str, Any]:
        return self.services.records.upsert(collection, key, fields=fields, append=append, owner=self.owner)

    # --- a person in the loop ---------------------------------------------------------------

    async def ask_preference(
        self, prompt: str, a: dict[str, Any], b: dict[str, Any], *, timeout: float
    ) -> dict[str, Any] | None:
        self.check()
        questions = self.services.questions
        asked: list[str] = []

        def waiting(question) -> None:
            asked.append(question.id)
            data = {"id": question.id, "state": "waiting", "a": question.a["candidate"], "b": question.b["candidate"]}
            self.emit("question", {**data, "expires_at": question.deadline})

        wait = asyncio.ensure_future(questions.ask(self.job_id, prompt, a, b, timeout, on_wait=waiting))
        self._waits.add(wait)
        try:
            answer = await wait
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():  # the job's task itself: stop waiting too
                wait.cancel()
                raise
            raise Cancelled(f"job {self.job_id} was cancelled") from None  # cancel() stopped the wait
        finally:
            self._waits.discard(wait)
        if asked:
            state = "timed_out" if answer is None else "answered"
            self.emit("question", {"id": asked[0], "state": state, **(answer or {})})
        return answer

    # --- models -----------------------------------------------------------------------------

    def _model_for(self, role: str, requested: str | None) -> str:
        routes = self.services.routes
        fallback = VISION_ROLES.get(role)
        try:
            capability = Capability(fallback or role)
        except ValueError:
            roles = ", ".join([*(c.value for c in Capability), *VISION_ROLES])
            raise InvalidRequest(f"unknown model role {role!r} (roles: {roles})") from None
        if requested:
            self.services.registry.for_capability(requested, capability)  # raises if unknown / unable
            return requested
        # score / describe / judge: their own route, else the vision route.
        route = getattr(routes, role, None) or (getattr(routes, fallback, None) if fallback else None)
        route = self.services.router.route_for(capability, route)
        if route:
            return route
        entry = self.services.registry.first_with(capability)
        if entry is None:
            raise CapabilityNotSupported(
                f"no configured model can do {capability.value} (for {role}); name one or set [routes].{role}"
            )
        return entry.id

    def _run_context(self) -> RunContext:
        return RunContext(credentials=self.credentials, job_id=self.job_id)

    async def _interruptible(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` (a wait of the job's own), ended by ``cancel`` as Cancelled."""
        wait = asyncio.ensure_future(awaitable)
        self._waits.add(wait)
        try:
            return await wait
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():  # the job's task itself: stop waiting too
                wait.cancel()
                raise
            raise Cancelled(f"job {self.job_id} was cancelled") from None
        finally:
            self._waits.discard(wait)

    def _room_key(self, model: str) -> str:
        try:
            return self.services.registry.get(model).id  # an alias shares its model's room
        except LoomError:
            return model  # unknown: the router says so with its own error

    async def _with_room(self, model: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` (one model call, crash retries included) under back-pressure: first a
        place among the jobs' calls to ``model`` (``JobRunner.room``), then, if the model's queue
        is full anyway (interactive requests filled it) or the call waited in it past
        ``[daemon.limits] queue_timeout`` (a slow model, a deep queue), wait for room and try
        again, as long as it takes: an accepted job fails for its own errors, never for load.
        An upstream's 429 (RateLimited) is the upstream's answer and fails the call as before."""
        room = self.events.room
        key = self._room_key(model)
        if not room.try_acquire(key):
            await self._interruptible(room.acquire(key))
        told = False
        try:
            while True:
                self.check()
                try:
                    return await call()
                except QueueFull as e:
                    if isinstance(e, RateLimited):
                        raise
                    reason, retry_after = "queue_full", e.retry_after
                except Unavailable as e:
                    if e.code != "queue_timeout":
                        raise  # out of memory, a device gone, shutting down: not a queue's length
                    reason, retry_after = "queue_timeout", 0.0
                if not told:  # once per call: why the job seems to stand still
                    told = True
                    log.info("job %s: %s for %s; waiting for room", self.job_id, reason, model)
                    self.emit("waiting", {"model": model, "reason": reason, "retry_after": retry_after})
                await self._interruptible(room.wait_for_room(key, retry_after))
        finally:
            room.release(key)

    async def call_model(self, model: str, fn: Callable[[RunContext], Awaitable[T]]) -> T:
        """Run ``fn``, one call to ``model`` that the pipeline makes through a service path of its
        own (a batch's line, through its endpoint's code), as the job's other calls run: with a
        RunContext that :meth:`cancel` stops, under back-pressure (see ``_with_room``), and run
        again when its worker crashed."""
        self.check()

        async def once() -> T:
            rc = self._run_context()
            self._calls.add(rc)
            try:
                return await fn(rc)
            finally:
                self._calls.discard(rc)

        retry = functools.partial(self._before_retry, model)
        return await self._with_room(model, lambda: retrying_crashes(once, self.crash_retries, retry))

    def _before_retry(self, model: str, attempt: int, error: Exception) -> None:
        self.check()
        log.warning("job %s: %s; running the call again (retry %d)", self.job_id, error, attempt)
        self.emit("retry", {"model": model, "attempt": attempt, "error": getattr(error, "message", str(error))})

    async def _run(
        self, model: str, capability: Capability, call: calls.Call, on_preview: Callable | None = None
    ) -> Any:
        self.check()
        started = time.perf_counter()

        async def once() -> tuple[ModelEntry, Any]:
            rc = self._run_context()
            if on_preview is not None:
                rc.add_preview_callback(on_preview)
            self._calls.add(rc)
            try:
                return await self.services.router.run(model, capability, call, priority=Priority.PIPELINE, ctx=rc)
            finally:
                self._calls.discard(rc)

        retry = functools.partial(self._before_retry, model)
        entry, result = await self._with_room(model, lambda: retrying_crashes(once, self.crash_retries, retry))
        self.usage.call(entry.id, capability.value, time.perf_counter() - started)
        return result

    async def chat(self, model: str, messages: list[dict], **params: Any) -> str:
        self.check()
        try:
            req = msgspec.convert({"model": model, "messages": messages, **params}, ChatCompletionRequest)
        except msgspec.ValidationError as e:
            raise InvalidRequest(f"invalid chat request from pipeline: {e}") from None
        capability = Capability.VISION if req.has_images() else Capability.CHAT
        started = time.perf_counter()

        async def once() -> tuple[ModelEntry, list[str], int, int]:
            rc = self._run_context()
            self._calls.add(rc)
            text: list[str] = []
            prompt_tokens = completion_tokens = 0
            try:
                entry, chunks = await self.services.router.stream(
                    model, capability, calls.Chat(request=req), priority=Priority.PIPELINE, ctx=rc
                )
                try:
                    async for chunk in chunks:
                        text.append(chunk.text)
                        prompt_tokens = chunk.prompt_tokens or prompt_tokens
                        completion_tokens = chunk.completion_tokens or completion_tokens
                finally:
                    await chunks.aclose()
            finally:
                self._calls.discard(rc)
            return entry, text, prompt_tokens, completion_tokens

        retry = functools.partial(self._before_retry, model)
        entry, text, prompt_tokens, completion_tokens = await self._with_room(
            model, lambda: retrying_crashes(once, self.crash_retries, retry)
        )
        self.usage.call(entry.id, capability.value, time.perf_counter() - started, prompt_tokens, completion_tokens)
        return "".join(text)

    async def _generate_image(self, model: str, job: ImageJob) -> bytes:
        job = msgspec.structs.replace(job, partial_images=JOB_PREVIEWS)
        try:
            images = await self._run(
                model, Capability.IMAGE, calls.GenerateImages(job=job), self.previews.listener(model)
            )
        finally:
            await self.previews.settle()
        if not images:
            raise ProviderError(f"{model} returned no image")
        return images[0]

    async def _describe(self, model: str, image: bytes, prompt: str | None, detail: str) -> str:
        return await self._run(model, Capability.VISION, calls.Describe(image=image, prompt=prompt, detail=detail))

    async def score(self, model: str, image: bytes, text: str) -> VisionScores:
        return await self._run(model, Capability.VISION, calls.Score(image=image, text=text))

    async def translate(self, model: str, texts: list[str], source: str, target: str) -> list[str]:
        out = await self._run(model, Capability.TRANSLATION, calls.Translate(texts=texts, source=source, target=target))
        if len(out) != len(texts):
            raise ProviderError(f"{model} returned {len(out)} translations for {len(texts)} texts")
        return out

    async def rerank(self, model: str, query: str, documents: list[str]) -> list[float]:
        result = await self._run(model, Capability.RERANK, calls.Rerank(query=query, documents=documents))
        if len(result.scores) != len(documents):
            raise ProviderError(f"{model} returned {len(result.scores)} scores for {len(documents)} documents")
        self.usage.tokens(result.prompt_tokens)
        return result.scores

    async def embed(self, model: str, inputs: list[str]) -> list[list[float]]:
        result = await self._run(model, Capability.EMBEDDING, calls.Embed(inputs=inputs))
        self.usage.tokens(result.prompt_tokens)
        return result.vectors
