"""What the app keeps on ``app.state.loom``: built by the factory, opened in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pluggy

from .api.auth import KeyRing
from .config import Config
from .files import FileStore
from .models import ModelRegistry
from .routing import ModelRouter
from .plugin_manager import PluginInfo
from .scheduler import Scheduler


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
    extras: dict[str, Any] = field(default_factory=dict)
