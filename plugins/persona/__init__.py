"""The persona plugin (seed 003's AI-Persona): the ``persona`` pipeline.

Registered through the ``loom`` entry-point group (``persona = "loom.plugins.persona"``).
"""

from loom.sdk import hookimpl

from .pipeline import Persona, PersonaParams

__all__ = ["Persona", "PersonaParams", "register_pipelines"]


@hookimpl
def register_pipelines(register):
    register(Persona)
