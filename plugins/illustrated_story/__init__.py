"""The illustrated-story plugin (seed 002's Story Agent): the ``illustrated_story`` pipeline.

Registered through the ``loom`` entry-point group
(``illustrated_story = "loom.plugins.illustrated_story"``).
"""

from loom.sdk import hookimpl

from .pipeline import IllustratedStory, IllustratedStoryParams

__all__ = ["IllustratedStory", "IllustratedStoryParams", "register_pipelines"]


@hookimpl
def register_pipelines(register):
    register(IllustratedStory)
