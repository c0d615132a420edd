"""loom-haiku: a pipeline plugin. ``POST /v1/pipelines/haiku {"topic": "..."}`` writes a haiku with
the chat model, checks it has three lines (retrying with feedback), and illustrates it."""

from loom.sdk import hookimpl

from .params import HaikuParams
from .pipeline import HaikuPipeline

__all__ = ["HaikuParams", "HaikuPipeline", "register_pipelines"]


@hookimpl
def register_pipelines(register):
    register(HaikuPipeline)
