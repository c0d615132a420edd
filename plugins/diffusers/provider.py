"""DiffusersProvider: text-to-image, image-to-image and inpainting with diffusers pipelines.

Text-to-image loads through ``AutoPipelineForText2Image`` (SD 1.5, SDXL, SD 3.5, Flux, ...);
image-to-image and inpainting pipelines are made from it with ``from_pipe`` on first use. Each
denoising step reports progress, and a cancelled generation stops at the next step. A job that
asks for ``partial_images`` gets previews of its first image at evenly spaced steps, decoded from
the latents by a linear map fitted to the model's VAE (``previews``). torch and
diffusers are imported by ``load``.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, ClassVar

from loom.sdk import (
    Cancelled,
    Capability,
    ImageJob,
    InvalidRequest,
    ModelSpec,
    RunContext,
    UnsupportedParameter,
)
from loom.sdk.previews import preview_steps
from loom.sdk.torchutil import TorchProvider
from loom.sdk.torchutil.images import open_image, png_bytes

from .options import DiffusersOptions

MAX_IMAGES = 10
log = logging.getLogger("loom.plugins.diffusers")


class DiffusersProvider(TorchProvider):
    name: ClassVar[str] = "diffusers"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.IMAGE})
    Options: ClassVar[type[DiffusersOptions]] = DiffusersOptions
    #: What ``size=auto`` means for a diffusers model (SD 1.5's native size; SDXL and Flux make
    #: good 512px images too, and it keeps CPU and small-GPU requests affordable).
    default_size: ClassVar[tuple[int, int]] = (512, 512)

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._engine: Any = None
        self._pipes: dict[str, Any] = {}  # "text2image", "image2image", "inpaint"
        self._multiple = 8

    # --- life cycle -------------------------------------------------------------------------------

    def _import_runtime(self) -> None:
        from . import engine  # torch and diffusers come in here

        self._engine = engine

    def _prepare(self) -> None:
        self._engine.import_pipeline(self.source(), self.options)

    def _build(self, device: str, dtype: Any) -> None:
        e = self._engine
        pipe = e.load_pipeline(self.source(), self.options, dtype)
        self._pipes = {"text2image": e.configure(pipe, device, self.options)}
        self._multiple = e.size_multiple(pipe)

    def _modules(self) -> list[Any]:
        return self._engine.modules(self._pipes.get("text2image"))

    def _drop(self) -> None:
        self._pipes = {}

    def _pipe(self, kind: str) -> Any:
        pipe = self._pipes.get(kind)
        if pipe is None:
            base = self._pipes["text2image"]
            pipe = self._engine.derive(kind, base, self.loaded_device(), self.options, self.spec.id)
            self._pipes[kind] = pipe
        return pipe

    # --- generation -------------------------------------------------------------------------------

    def generate_images(self, job: ImageJob, ctx: RunContext) -> list[bytes]:
        self.loaded_device()
        self._validate(job)
        init = open_image(job.init_image, param="image") if job.init_image is not None else None
        mask = open_image(job.mask, param="mask", mode="L") if job.mask is not None else None
        size = (job.width, job.height)
        kind = "text2image" if init is None else ("image2image" if mask is None else "inpaint")
        ctx.check()
        with self._lock:
            pipe = self._pipe(kind)
            params = self._engine.parameters(pipe)
            kwargs = self._arguments(job, params)
            if init is not None:
                kwargs.update(image=init.resize(size), strength=job.strength)
                if mask is not None:
                    kwargs["mask_image"] = mask.resize(size)
            if init is None or "height" in params:
                kwargs.update(width=job.width, height=job.height)
            stopped = []
            previews = Previews(self._engine, pipe, job, ctx, self.spec.id)

            def on_step(done: int, total: int, latents: Any) -> bool:
                try:
                    ctx.progress(done, total, "denoising")
                    previews.step(done, total, latents)
                except Cancelled:
                    stopped.append(done)
                    return False
                return True

            images = self._engine.run(pipe, kwargs, on_step, self.spec.id)
        if stopped or ctx.cancelled:
            raise Cancelled(f"image generation on {self.spec.id!r} was cancelled")
        return [png_bytes(img) for img in images]

    def _validate(self, job: ImageJob) -> None:
        if not 1 <= job.n <= MAX_IMAGES:
            raise InvalidRequest(f"n must be 1..{MAX_IMAGES}, got {job.n}", param="n")
        m = self._multiple
        if job.width % m or job.height % m or job.width < m or job.height < m:
            raise InvalidRequest(
                f"size {job.width}x{job.height} cannot be made by model {self.spec.id!r}: "
                f"width and height must be multiples of {m}",
                param="size",
            )
        if job.init_image is not None and not 0.0 < job.strength <= 1.0:
            raise InvalidRequest(f"strength must be in (0, 1], got {job.strength}", param="strength")

    def _arguments(self, job: ImageJob, params: set[str]) -> dict[str, Any]:
        seed = job.seed if job.seed is not None else secrets.randbits(32)
        kwargs: dict[str, Any] = {
            "prompt": job.prompt,
            "num_images_per_prompt": job.n,
            "generator": self._engine.generators(seed, job.n),
        }
        if job.negative_prompt:
            if "negative_prompt" not in params:
                raise UnsupportedParameter(f"model {self.spec.id!r} takes no negative_prompt", param="negative_prompt")
            kwargs["negative_prompt"] = job.negative_prompt
        steps = job.steps or self.options.steps
        if steps is not None:
            kwargs["num_inference_steps"] = steps
        guidance = job.guidance_scale if job.guidance_scale is not None else self.options.guidance_scale
        if guidance is not None:
            kwargs["guidance_scale"] = guidance
        return kwargs


class Previews:
    """Sends the previews a job asks for (``ImageJob.partial_images``) at evenly spaced steps."""

    def __init__(self, engine: Any, pipe: Any, job: ImageJob, ctx: RunContext, model_id: str) -> None:
        self.engine, self.pipe, self.job, self.ctx, self.model_id = engine, pipe, job, ctx, model_id
        self.steps: list[int] | None = None if job.partial_images else []

    def step(self, done: int, total: int, latents: Any) -> None:
        if self.steps is None:
            self.steps = preview_steps(total, self.job.partial_images)
        if done not in self.steps or latents is None:
            return
        try:
            png = self.engine.previewer(self.pipe).png(latents, self.job.width, self.job.height)
        except Exception as e:  # a preview is never worth the image: the caller gets fewer
            log.warning("no previews from model %r: %s: %s", self.model_id, type(e).__name__, e)
            self.steps = []
            return
        self.ctx.preview(png, self.steps.index(done))
