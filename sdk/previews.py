"""Previews of an image being made: when an image provider sends them.

A caller asks for ``ImageJob.partial_images`` previews (0..3, OpenAI's ``partial_images``); the
provider sends them with ``RunContext.preview(png, index)`` while it works. They are spread evenly
over the work and never at its end (the final image follows at once): :func:`preview_steps`
says after which of ``total`` steps to send them.
"""

from __future__ import annotations

#: The most previews one image may ask for (OpenAI's bound on ``partial_images``).
MAX_PARTIAL_IMAGES = 3


def preview_steps(total: int, count: int) -> list[int]:
    """After which steps (1-based, of ``total``) to send ``count`` previews: evenly spaced, the last
    step excluded, each step once. Fewer than ``count`` when there are too few steps (a 2-step
    generation has one step to show before its end); none for ``count`` 0.

    >>> preview_steps(20, 3), preview_steps(4, 3), preview_steps(2, 3), preview_steps(20, 0)
    ([5, 10, 15], [1, 2, 3], [1], [])
    """
    steps: list[int] = []
    for i in range(1, count + 1):
        step = -(-total * i // (count + 1))  # ceil(total * i / (count + 1))
        if 1 <= step < total and step not in steps:
            steps.append(step)
    return steps
