"""The retrieval plugin (seed 001): ``image_to_story`` and ``story_to_image`` with RAG.

Both embed their input, retrieve the most similar past stories and images from the daemon's
FAISS indices (``ctx.rag_search``) as context or style guidance, list what they retrieved in
their result, and store what they made (``ctx.rag_add``). Registered through the ``loom``
entry-point group (``retrieval = "loom.plugins.retrieval"``).
"""

from loom.sdk import hookimpl

from .image_to_story import ImageToStory, ImageToStoryParams
from .story_to_image import StoryToImage, StoryToImageParams

__all__ = ["ImageToStory", "ImageToStoryParams", "StoryToImage", "StoryToImageParams", "register_pipelines"]


@hookimpl
def register_pipelines(register):
    register(ImageToStory)
    register(StoryToImage)
