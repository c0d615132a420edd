"""The story plugin (seed 000): the ``story``, ``translate`` and ``describe`` pipelines.

Registered through the ``loom`` entry-point group (``story = "loom.plugins.story"``) like any
third party's pipeline plugin; it uses nothing of the daemon's but ``loom.sdk``. The helpers it
shares with the retrieval, illustrated-story and persona plugins live in :mod:`loom.sdk.storykit`,
where any plugin may use them.
"""

from loom.sdk import hookimpl

from .describe import Describe, DescribeParams
from .story import Story, StoryParams
from .translate import Translate, TranslateParams

__all__ = ["Describe", "DescribeParams", "Story", "StoryParams", "Translate", "TranslateParams", "register_pipelines"]


@hookimpl
def register_pipelines(register):
    register(Story)
    register(Translate)
    register(Describe)
