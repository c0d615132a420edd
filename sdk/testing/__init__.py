"""loom.sdk.testing: the conformance kit for plugin authors.

- :class:`ProviderConformance` (or :func:`provider_conformance`): subclass it in your tests and
  pytest runs every check that applies to the capabilities your provider declares.
- :class:`FakePipelineContext` and :func:`pipeline_problems`: test a pipeline without a daemon.
- :class:`LoomServer`: a real ``loom serve`` on a free port, for end-to-end tests.
- :func:`route_problems`: what the daemon would refuse in a plugin's ``register_routes``.

Imports nothing heavy (pytest, msgspec and pluggy only); ``loom.sdk`` itself never imports this.
"""

from .checks import CHECKS, Check, Settings, run_checks
from .harness import Subject, decode_options
from .images import make_png, png_size
from .pipelines import FakePipelineContext, pipeline_problems
from .routes import registered_routes, route_problems
from .server import LoomServer, free_port
from .suite import ProviderConformance, provider_conformance

__all__ = [
    "CHECKS",
    "Check",
    "FakePipelineContext",
    "LoomServer",
    "ProviderConformance",
    "Settings",
    "Subject",
    "decode_options",
    "free_port",
    "make_png",
    "pipeline_problems",
    "png_size",
    "provider_conformance",
    "registered_routes",
    "route_problems",
    "run_checks",
]
