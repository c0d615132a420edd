"""The beam search pipeline plugin (seed 004): prompt beam search with critique and lineage.

Registered through the ``loom`` entry-point group (``beam_search = "loom.plugins.beam_search"``)
exactly like a third party's pipeline plugin; it uses nothing but ``loom.sdk``.
"""

from loom.sdk import hookimpl

from .params import BeamSearchParams
from .pipeline import BeamSearch

__all__ = ["BeamSearch", "BeamSearchParams", "register_pipelines"]


@hookimpl
def register_pipelines(register):
    register(BeamSearch)
