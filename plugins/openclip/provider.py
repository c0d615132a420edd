"""OpenClipProvider: CLIP embeddings of images and text, CLIP scores, and aesthetic scores.

* ``embed``: each input is a text, or an image as a ``data:image/...`` URI; all come back in the
  same space, unit length (so text-to-image search is a dot product).
* ``rerank``: the query and each document (texts or image URIs, in any mix) embedded as above;
  a document's score is its cosine with the query, so a text query ranks pictures (a multimodal
  rerank) and a picture ranks captions.
* ``score``: ``clip`` is the cosine similarity of the image and the text embeddings, floored at
  0 (about 0.2 to 0.4 for a matching caption with real CLIP weights); ``aesthetic`` is the LAION
  predictor's output on the unit image embedding, clamped to its 0-10 scale. ``/v1/vision/score``
  combines them with ``VisionScores.combined(alpha)``.

torch and open_clip are imported by ``load``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, ClassVar

from loom.sdk import (
    Capability,
    CapabilityNotSupported,
    Embeddings,
    InvalidRequest,
    ModelSpec,
    ProviderError,
    RerankScores,
    RunContext,
    VisionScores,
)
from loom.sdk.torchutil import TorchProvider
from loom.sdk.torchutil.images import image_from_uri, is_image_uri, open_image
from loom.sdk.torchutil.sources import Source, weights_bytes

from .options import OpenClipOptions

BATCH = 32


class OpenClipProvider(TorchProvider):
    name: ClassVar[str] = "openclip"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.EMBEDDING, Capability.VISION, Capability.RERANK}
    )
    Options: ClassVar[type[OpenClipOptions]] = OpenClipOptions

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._engine: Any = None
        self._model: Any = None
        self._preprocess: Any = None
        self._tokenizer: Any = None
        self._head: Any = None

    # --- life cycle -------------------------------------------------------------------------------

    def estimate_bytes(self) -> int:
        total = 0
        for ref in (self.options.model, self.options.pretrained, self.options.aesthetic_head):
            if ref and Path(os.path.expanduser(ref)).exists():
                total += weights_bytes(Source(ref, os.path.expanduser(ref), True, ""))
        return total

    def _import_runtime(self) -> None:
        from . import engine  # torch and open_clip come in here

        self._engine = engine

    def _build(self, device: str, dtype: Any) -> None:
        e, o = self._engine, self.options
        name, pretrained = e.model_reference(o, provider=self.name, model_id=self.spec.id)
        try:
            model, _, preprocess = e.open_clip.create_model_and_transforms(
                name, pretrained=pretrained, precision=e.PRECISION[dtype], device=device, cache_dir=o.cache_dir
            )
        except Exception as err:
            where = pretrained or name
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ProviderError(f"{self.name}: could not load model {self.spec.id!r} ({where}): {detail}") from err
        self._model, self._preprocess = model.eval(), preprocess
        self._tokenizer = e.open_clip.get_tokenizer(name)
        if o.aesthetic_head:
            dim = e.embed_dim(name, model)
            head = e.load_head(o.aesthetic_head, dim, provider=self.name, model_id=self.spec.id)
            self._head = head.to(device)

    def _modules(self) -> list[Any]:
        return [self._model, self._head]

    def _drop(self) -> None:
        self._model = self._preprocess = self._tokenizer = self._head = None

    # --- encoding ---------------------------------------------------------------------------------

    def _encode_images(self, images: list[Any]) -> Any:
        import torch

        pixels = torch.stack([self._preprocess(img) for img in images]).to(self.loaded_device(), self._dtype)
        with torch.inference_mode():
            return torch.nn.functional.normalize(self._model.encode_image(pixels).float(), dim=-1)

    def _encode_texts(self, texts: list[str]) -> tuple[Any, int]:
        import torch

        tokens = self._tokenizer(texts).to(self.loaded_device())
        with torch.inference_mode():
            vectors = torch.nn.functional.normalize(self._model.encode_text(tokens).float(), dim=-1)
        return vectors, int((tokens != 0).sum())

    def embed(self, inputs: list[str], ctx: RunContext) -> Embeddings:
        return self._embed(inputs, ctx, "input")

    def _embed(self, inputs: list[str], ctx: RunContext, param: str) -> Embeddings:
        self.loaded_device()
        images = {i: image_from_uri(x, param=param) for i, x in enumerate(inputs) if is_image_uri(x)}
        texts = {i: x for i, x in enumerate(inputs) if i not in images}
        vectors: dict[int, list[float]] = {}
        tokens = 0
        with self._lock:
            for group in _groups(list(images), BATCH):
                ctx.check()
                for i, v in zip(group, self._encode_images([images[i] for i in group]).cpu().tolist()):
                    vectors[i] = v
            for group in _groups(list(texts), BATCH):
                ctx.check()
                encoded, count = self._encode_texts([texts[i] for i in group])
                tokens += count
                for i, v in zip(group, encoded.cpu().tolist()):
                    vectors[i] = v
        return Embeddings(vectors=[vectors[i] for i in range(len(inputs))], prompt_tokens=tokens)

    # --- rerank -----------------------------------------------------------------------------------

    def rerank(self, query: str, documents: list[str], ctx: RunContext) -> RerankScores:
        if not documents:
            raise InvalidRequest("documents must hold at least one document", param="documents")
        # One encoding of the query (its image errors name "query"), then the documents in
        # batches; each document is encoded alone of the others, so its score is its own.
        asked = self._embed([query], ctx, "query")
        docs = self._embed(documents, ctx, "documents")
        q = asked.vectors[0]
        scores = [sum(a * b for a, b in zip(q, d, strict=True)) for d in docs.vectors]
        return RerankScores(scores=scores, prompt_tokens=asked.prompt_tokens + docs.prompt_tokens)

    # --- vision -----------------------------------------------------------------------------------

    def score(self, image: bytes, text: str, ctx: RunContext) -> VisionScores:
        self.loaded_device()
        ctx.check()
        if self._head is None:
            raise CapabilityNotSupported(
                f"model {self.spec.id!r} has no aesthetic head: set options.aesthetic_head to a LAION "
                "aesthetic predictor file to score images",
                param="model",
            )
        img = open_image(image, param="image")
        ctx.check()
        import torch

        with self._lock:
            image_vec = self._encode_images([img])
            text_vec, _ = self._encode_texts([text])
            with torch.inference_mode():
                aesthetic = float(self._head(image_vec.to(self._head[0].weight.dtype)).squeeze())
        cosine = float((image_vec * text_vec).sum())
        # VisionScores.clip is 0..1: an image and a text that point apart do not match at all.
        return VisionScores(clip=_clamp(cosine, 0.0, 1.0), aesthetic=_clamp(aesthetic, 0.0, 10.0))

    def describe(self, image: bytes, prompt: str | None, detail: str, max_tokens: int | None, ctx: RunContext) -> str:
        ctx.check()
        raise CapabilityNotSupported(
            f"model {self.spec.id!r} is a CLIP model: it scores and embeds images but does not "
            "describe them; use a captioning model (transformers-vision)",
            param="model",
        )


def _groups(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _clamp(value: float, low: float, high: float) -> float:
    if math.isnan(value):
        raise ProviderError("the model produced a NaN score")
    return min(high, max(low, value))
