"""Every service of the daemon, built once by :func:`build_services` and run by its lifespan.

The order is the order of dependence: config -> plugins -> models -> scheduler -> router ->
files and stores -> provider health -> job runner -> evaluations and the web UI's sessions, with
one timer service that the others register
their periodic work with. Everything is built here, in full, before the app starts; the lifespan
only opens what needs the event loop (workers, timers, background loads) and closes it all in
reverse. Route handlers receive the services they name through Litestar's dependency injection
(:meth:`Services.dependencies`); pipelines receive the narrower
:class:`~loom.daemon.jobs.context.PipelineServices`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pluggy
from litestar.di import Provide
from loom.sdk.config import ModelConfig
from loom.sdk.errors import PluginError

from .api.batch_lines import BatchLines
from .batches import Batches, BatchPipeline, BatchStore
from .batches.work import PIPELINE as BATCH_PIPELINE
from .catalog.live import ModelCatalog
from .chat.intake import ChatIntake
from .config import Config, Routes, max_upload_bytes
from .evaluations import EvaluationStore
from .files import FileStore, check_writable
from .http.body import BodyReader
from .http.sessions import Sessions
from .image_fetch import ImageFetcher
from .jobs import JobRunner, JobStore, collect_pipelines
from .jobs.context import PipelineServices
from .jobs.retention import Retention, RetentionPolicy
from .keys import KeyRing, StreamTokens
from .models import ModelRegistry, build_registry
from .plugin_manager import PluginInfo, collect, collect_providers, make_plugin_manager
from .principals import file_reader
from .provider_health import ProviderHealth
from .questions import Questions
from .quotas import Quotas
from .rag import RagStore
from .records import RecordStore
from .responses import ResponseStore
from .routing import STATE_FILE, ModelRouter
from .scheduler import Scheduler
from .scheduler.event_log import log_event
from .shutdown import Shutdown
from .storage.service import Storage
from .text_services import TextServices
from .timers import Timers
from .tracing import Tracing
from .uploads import UploadStore

JOBS_DB = "loom.db"
RECORDS_DB = "records.db"
RESPONSES_DB = "responses.db"
RAG_DIR = "rag"
EVALUATIONS_DB = "evaluations.db"
FILES_DB = "files.db"
BATCHES_DB = "batches.db"
#: How often files past their ``expires_at`` are removed.
PURGE_FILES_S = 3600.0


@dataclass(frozen=True, eq=False)
class Services:
    """The daemon's services; every field is set when :func:`build_services` returns."""

    config: Config
    pm: pluggy.PluginManager
    plugins: dict[str, PluginInfo]
    registry: ModelRegistry
    scheduler: Scheduler
    router: ModelRouter
    timers: Timers
    keys: KeyRing
    #: Short-lived tokens for browsers' event streams and WebSockets (``POST /v1/stream-tokens``).
    tokens: StreamTokens
    quotas: Quotas
    files: FileStore
    #: File URLs (signed, or presigned by the output store) and publishing to the output store.
    storage: Storage
    bodies: BodyReader
    routes: Routes
    health: ProviderHealth
    rag: RagStore
    records: RecordStore
    runner: JobRunner
    #: Fetches image URLs under ``[daemon.image_urls]`` (the SSRF guard); the intake and the
    #: rerank routes share it, and the intake closes it.
    fetcher: ImageFetcher
    #: What a chat request goes through before a model sees it (rules, route, parameter policy,
    #: image URLs), for /v1/chat/completions and /v1/responses.
    intake: ChatIntake
    #: Stored Responses API responses.
    responses: ResponseStore
    #: bodies, intake, router and scheduler as one dependency for the text routes (see
    #: :mod:`loom.daemon.text_services`).
    text: TextServices
    #: Adds and removes models while running (``/admin/models``); it keeps the current
    #: ``[[models]]`` (``config`` is the config Loom started with).
    catalog: ModelCatalog
    #: Set when shutdown begins; streams that only watch end on it (``GET /admin/events``).
    shutdown: Shutdown
    #: A/B preferences between images (``/v1/evaluations``, the web UI's evaluation page).
    evaluations: EvaluationStore
    #: Questions running jobs put to a person (``ctx.ask_preference``), answered with a preference.
    questions: Questions
    #: Who is signed in to the web UI (``/ui``): its cookies, checked against ``keys``.
    sessions: Sessions
    #: OpenTelemetry traces (``[daemon.tracing]``); None when off.
    tracing: Tracing | None
    #: Files uploaded through the Files API (``/v1/files``) and those batches write.
    uploads: UploadStore
    #: OpenAI's Batch API (``/v1/batches``): batches run as lowest-priority jobs.
    batches: Batches

    def dependencies(self) -> dict[str, Provide]:
        """One provider per service, by field name: a handler asks for ``registry:
        NamedDependency[ModelRegistry]`` and gets this app's registry."""
        return {f.name: _constant(getattr(self, f.name)) for f in fields(self) if f.name not in _NOT_FOR_ROUTES}

    def lifespan(self, _app: object = None) -> AbstractAsyncContextManager[Services]:
        """The app's lifespan hook (Litestar passes the app)."""
        return self.running()

    async def drain(self) -> None:
        """Shutdown has begun (the server stopped accepting): stop running jobs, which are left
        ``interrupted`` and resumable from their last finished step, and end the streams that
        only watch, so calls in flight are all that is waited for. The lifespan closes the rest."""
        self.shutdown.begin()
        await self.runner.stop()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Services]:
        """Open what needs the event loop, in order; close everything in reverse on the way out."""
        async with AsyncExitStack() as stack:
            if self.tracing is not None:
                stack.callback(self.tracing.close)  # last: the spans of the shutdown get out too
            stack.callback(self.storage.close)  # after the jobs stopped: their uploads are done
            stack.callback(self.runner.store.close)
            stack.callback(self.records.close)
            stack.callback(self.responses.close)
            stack.callback(self.evaluations.close)
            stack.callback(self.uploads.close)
            stack.callback(self.batches.store.close)
            stack.push_async_callback(self.intake.aclose)
            stack.push_async_callback(asyncio.to_thread, self.rag.close)  # saving an index takes a moment
            await self.scheduler.start()
            stack.push_async_callback(self.scheduler.stop)
            stack.push_async_callback(self.health.aclose)
            self.rag.start()
            self.runner.start(resume=self.config.jobs.resume_interrupted, resume_limit=self.config.jobs.resume_limit)
            stack.push_async_callback(self.runner.stop)
            self.timers.start()  # last: a timer may use any service
            stack.callback(self.timers.stop)
            yield self


#: Services only the app factory uses (the plugin manager is wiring).
_NOT_FOR_ROUTES = {"pm", "timers", "tracing"}


def _constant(value: object) -> Provide:
    def provide() -> object:
        return value

    return Provide(provide, use_cache=True, sync_to_thread=False)


def build_services(
    config: Config,
    extra_plugins: dict[str, object] | None = None,
    config_path: Path | None = None,
    span_exporter: Any = None,
) -> Services:
    """Build every service from the config. Raises ConfigError / PluginError (start-up stops).

    ``config_path`` is the file ``config`` came from: models added while running are written there.
    ``span_exporter`` (an OpenTelemetry exporter: a test's in-memory one) turns traces on.
    """
    pm, infos = make_plugin_manager(config.plugins, extra_plugins)
    providers = collect_providers(pm, infos)
    plugin_models: list[tuple[str, ModelConfig]] = collect(pm, "register_models")
    registry = build_registry(config, providers, plugin_models, infos)
    pipelines = collect_pipelines(pm, infos)
    data_dir = config.data_dir
    check_writable(data_dir)
    timers = Timers()
    keys = KeyRing(config)
    tracing = Tracing.from_config(config, span_exporter)
    scheduler = Scheduler(config, registry, timers=timers, tracing=tracing)
    scheduler.events.listeners.append(log_event)  # loads, unloads, evictions, failures in the log
    router = ModelRouter(registry, scheduler)
    router.load(data_dir / STATE_FILE)  # the runtime switches of the last run
    files = FileStore(data_dir)
    storage = Storage.open(data_dir, config.storage)
    catalog = ModelCatalog(
        config, config_path, registry=registry, scheduler=scheduler, router=router, providers=providers, plugins=infos
    )
    # Remote providers check their options here: a bad one stops start-up with a ConfigError.
    health = ProviderHealth(registry, router, timers)
    durability = config.jobs.durability
    rag = RagStore(data_dir / RAG_DIR, durability=durability)
    records = RecordStore(data_dir / RECORDS_DB, durability)
    job_store = JobStore(data_dir / JOBS_DB, durability)
    files.may_read = file_reader(storage.signer, job_store.owner_of_output)
    evaluations = EvaluationStore(data_dir / EVALUATIONS_DB, durability)
    questions = Questions(evaluations)
    pipeline_services = PipelineServices(
        router=router,
        registry=registry,
        routes=config.routes,
        files=files,
        storage=storage,
        rag=rag,
        records=records,
        questions=questions,
        tracing=tracing,
    )
    runner = JobRunner(pipeline_services, job_store, pipelines)
    Retention(job_store, files.root, RetentionPolicy.from_config(config.jobs), rag).schedule(timers)
    bodies = BodyReader(config.daemon.limits.max_body_bytes)
    fetcher = ImageFetcher(config.daemon.image_urls)
    intake = ChatIntake(registry, router, config.routes, files, fetcher, config.daemon.compat)
    text = TextServices(bodies, intake, router, scheduler)
    responses = ResponseStore(data_dir / RESPONSES_DB, durability)
    uploads = UploadStore(data_dir, data_dir / FILES_DB, max_upload_bytes(config.files), durability)
    timers.every(PURGE_FILES_S, uploads.purge_expired, id="purge-expired-files", first=60.0)
    batches = Batches(BatchStore(data_dir / BATCHES_DB, durability), uploads, runner, config.batches)
    # A batch is a job of a pipeline the daemon registers for itself (hidden from the lists).
    if BATCH_PIPELINE in pipelines:
        raise PluginError(
            f"pipeline {BATCH_PIPELINE!r} (plugin {pipelines[BATCH_PIPELINE].plugin!r}) takes the name of Loom's batches"
        )
    lines = BatchLines(text, registry, files, storage, responses)
    pipelines[BATCH_PIPELINE] = BatchPipeline(batches, lines).info()
    return Services(
        config=config,
        pm=pm,
        plugins=infos,
        registry=registry,
        scheduler=scheduler,
        router=router,
        timers=timers,
        keys=keys,
        tokens=StreamTokens(),
        quotas=Quotas(config.daemon.quotas),
        files=files,
        storage=storage,
        bodies=bodies,
        routes=config.routes,
        health=health,
        rag=rag,
        records=records,
        runner=runner,
        fetcher=fetcher,
        intake=intake,
        responses=responses,
        text=text,
        catalog=catalog,
        shutdown=Shutdown(),
        evaluations=evaluations,
        questions=questions,
        sessions=Sessions.open(data_dir, keys),
        tracing=tracing,
        uploads=uploads,
        batches=batches,
    )
