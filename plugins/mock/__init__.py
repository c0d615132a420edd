"""The mock plugin: a deterministic provider for every capability, needing no weights.

Used by the integration tests, the benchmarks and anyone trying Loom without a model; it registers
through the ``loom`` entry-point group exactly like a third-party plugin.
"""

from loom.sdk import hookimpl

from .options import MockOptions
from .provider import MockProvider

__all__ = ["MockOptions", "MockProvider", "register_providers"]


@hookimpl
def register_providers(register):
    register(MockProvider)
