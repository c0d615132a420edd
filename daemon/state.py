"""What the app keeps on ``app.state.loom``: built by the factory, opened in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from .api.auth import KeyRing
from .catalog.live import ModelCatalog
from .config import Config
from .files import FileStore
from .models import ModelRegistry
from .routing import ModelRouter
from .plugin_manager import PluginInfo
from .scheduler import Scheduler

if TYPE_CHECKING:
    from .jobs import JobRunner
    from .provider_health import ProviderHealth
    from .rag import RagStore
    from .records import RecordStore


@dataclass
class Loom:
    config: Config
    pm: pluggy.PluginManager
    plugins: dict[str, PluginInfo]
    registry: ModelRegistry
    scheduler: Scheduler
    router: ModelRouter
    keys: KeyRing
    files: FileStore
    #: Adds and removes models while running (``/admin/models``); it keeps the current
    #: ``[[models]]`` (``config`` is the config Loom started with).
    catalog: ModelCatalog
    extras: dict[str, Any] = field(default_factory=dict)
    #: Health checks of remote upstreams; set by ``provider_health.provider_lifespan``.
    provider_health: ProviderHealth | None = None
    #: Pipeline jobs; set by ``jobs.jobs_lifespan`` while the app runs.
    jobs: JobRunner | None = None
    #: Retrieval indices (``rag.rag_lifespan``) and named records (``records.records_lifespan``).
    rag: RagStore | None = None
    records: RecordStore | None = None
