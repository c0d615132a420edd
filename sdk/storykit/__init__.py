"""loom.sdk.storykit: helpers for pipelines that write stories, read images and use retrieval.

Used by the built-in story, retrieval, illustrated-story and persona plugins and open to any
third-party pipeline: :mod:`.writing` (audience, length, reading a model's answer, the story step),
:mod:`.media` (images a job is given), :mod:`.memory` (remembering and recalling through the
retrieval store) and :mod:`.params` (parameter types for a pipeline's ``Params``). Everything goes
through the :class:`~loom.sdk.pipelines.PipelineContext`; nothing heavy is imported.
"""
