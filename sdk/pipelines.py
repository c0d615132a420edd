"""The pipeline protocol: multi-step work that runs as a durable job.

A pipeline is registered with ``register_pipelines`` and started by ``POST /v1/pipelines/{name}``.
Its ``Params`` struct is decoded strictly from the request body (and published as JSON schema at
``GET /v1/pipelines``). ``run`` does its work through the :class:`PipelineContext` the daemon
hands it, so every model call goes through the scheduler at pipeline priority.

Durability: wrap each unit of work in ``await ctx.step(key, fn)``. A finished step's result is
stored; when an interrupted job is resumed, ``run`` is called again from the top and finished
steps return their stored result at once, so work continues from the last finished step.
Step results must be msgspec-encodable (artefacts are saved with ``ctx.save_artifact`` and
referred to by their relative path).

Memory that outlives a job: ``rag_add`` / ``rag_search`` keep embeddings in the daemon's
retrieval indices (FAISS under ``<data_dir>/rag/``), and ``record_get`` / ``record_upsert`` keep
named records (personas) that a pipeline updates by key. Both are the daemon's, so every
pipeline shares them, and ``GET /v1/rag/...`` and ``GET /v1/personas`` read them. Wrap writes in
a ``ctx.step`` like any other work, so a resumed job does not write twice.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from msgspec import Struct

from .protocols import ImageJob, VisionScores

T = TypeVar("T")


class PipelineContext(abc.ABC):
    """What a running pipeline may do; implemented by the daemon's job runner (``JobContext``)
    and by the testing kit's ``FakePipelineContext``.

    The methods a pipeline calls are declared here once, with their defaults; where a method has
    defaults, an implementation supplies the ``_``-prefixed method it forwards to, which takes
    every argument explicitly (an image request as one :class:`ImageJob`)."""

    job_id: str
    #: The job's output folder relative to the data dir: output/YYYY-MM-DD/ses-HHMMSS-<id>/
    output_dir: str

    @abc.abstractmethod
    async def step(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` once per job: a finished step returns its stored result on resume."""

    def progress(self, percent: float, stage: str, message: str = "") -> None:
        """Report progress (0-100) and the current stage; sent to listeners as an event."""
        self._progress(percent, stage, message)

    @abc.abstractmethod
    def _progress(self, percent: float, stage: str, message: str) -> None: ...

    @abc.abstractmethod
    def emit(self, type: str, data: dict[str, Any]) -> None:
        """Send a pipeline-specific event (e.g. ``candidate`` for beam search)."""

    @abc.abstractmethod
    def set_metadata(self, fields: dict[str, Any]) -> None:
        """Set top-level fields of the job's ``metadata.json`` (the pipeline's own records, e.g.
        beam search's seed-shaped ``iterations``); later calls replace the fields they name. Kept
        with the job, so every rewrite of the file and a resumed run keep them. The daemon's own
        fields (ids, state, timings, usage, result, error) cannot be replaced."""

    @abc.abstractmethod
    def check(self) -> None:
        """Raise ``Cancelled`` if the job was cancelled; called between steps."""

    def save_artifact(self, name: str, data: bytes, meta: dict[str, Any] | None = None) -> str:
        """Store bytes in the job's output folder and index them; returns the relative path."""
        return self._save_artifact(name, data, meta)

    @abc.abstractmethod
    def _save_artifact(self, name: str, data: bytes, meta: dict[str, Any] | None) -> str: ...

    @abc.abstractmethod
    def read_artifact(self, path: str) -> bytes:
        """Read back an artefact saved by :meth:`save_artifact` (e.g. after a resume), or any file
        the daemon serves at ``/v1/files/<path>`` (an input image a client pointed at)."""

    @abc.abstractmethod
    def keep_artifact(self, path: str, folder: str) -> str:
        """Copy an artefact to ``images/<folder>/``, where job retention does not delete it (for
        records that outlive the job, such as a persona's images); returns the copy's path."""

    def model_for(self, role: str, requested: str | None = None) -> str:
        """The model id to use for a role: a capability ("chat", "image", "vision", "embedding",
        "translation", "rerank") or a use of a vision model ("score", "describe", "judge", whose routes
        fall back to the "vision" route): ``requested`` if given, else the config's route, else
        the first model with that capability."""
        return self._model_for(role, requested)

    @abc.abstractmethod
    def _model_for(self, role: str, requested: str | None) -> str: ...

    @abc.abstractmethod
    async def chat(self, model: str, messages: list[dict], **params: Any) -> str:
        """One chat completion (params as in the OpenAI API: max_tokens, temperature, seed,
        response_format); returns the text. Token usage is added to the job's totals."""

    async def generate_image(
        self,
        model: str,
        prompt: str,
        *,
        width: int = 512,
        height: int = 512,
        seed: int | None = None,
        steps: int | None = None,
        negative_prompt: str | None = None,
        init_image: bytes | None = None,
        mask: bytes | None = None,
        strength: float = 0.75,
    ) -> bytes:
        """One PNG image."""
        job = ImageJob(
            prompt=prompt,
            width=width,
            height=height,
            seed=seed,
            steps=steps,
            negative_prompt=negative_prompt,
            init_image=init_image,
            mask=mask,
            strength=strength,
        )
        return await self._generate_image(model, job)

    @abc.abstractmethod
    async def _generate_image(self, model: str, job: ImageJob) -> bytes: ...

    async def describe(self, model: str, image: bytes, prompt: str | None = None, detail: str = "normal") -> str:
        """Describe an image in words."""
        return await self._describe(model, image, prompt, detail)

    @abc.abstractmethod
    async def _describe(self, model: str, image: bytes, prompt: str | None, detail: str) -> str: ...

    @abc.abstractmethod
    async def score(self, model: str, image: bytes, text: str) -> VisionScores:
        """CLIP and aesthetic scores of an image against text."""

    @abc.abstractmethod
    async def translate(self, model: str, texts: list[str], source: str, target: str) -> list[str]:
        """Translate texts."""

    @abc.abstractmethod
    async def embed(self, model: str, inputs: list[str]) -> list[list[float]]:
        """Unit-length embeddings of texts (or image data URIs, for CLIP models)."""

    @abc.abstractmethod
    async def rerank(self, model: str, query: str, documents: list[str]) -> list[float]:
        """How relevant each document is to ``query`` (higher is more relevant), in the documents'
        order; images as data URIs for models that read them (CLIP)."""

    # --- retrieval (RAG) and records: memory that outlives the job --------------------------

    async def rag_add(
        self,
        collection: str,
        vector: list[float],
        *,
        model: str,
        kind: str = "text",
        text: str = "",
        path: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store one embedding (made by ``embed`` on ``model``) in the retrieval index
        ``collection`` ("stories", "images", ...), with what it stands for: ``kind`` ("text" or
        "image"), a ``text`` (the story, or an image's prompt or description), an artefact
        ``path`` and ``meta``. Each (collection, model) pair is its own index, since vectors of
        different models are not comparable. Returns ``{"id", "collection", "model", "count"}``."""
        item = {"kind": kind, "text": text, "path": path, "meta": meta}
        return await self._rag_add(collection, vector, model, item)

    @abc.abstractmethod
    async def _rag_add(self, collection: str, vector: list[float], model: str, item: dict[str, Any]) -> dict[str, Any]:
        """Store ``vector`` with ``item`` (``kind``, ``text``, ``path``, ``meta``)."""

    async def rag_search(self, collection: str, vector: list[float], *, model: str, k: int = 5) -> list[dict[str, Any]]:
        """The ``k`` items of ``collection`` (as embedded by ``model``) nearest to ``vector``, best
        first: dicts with ``id``, ``score`` (cosine), ``kind``, ``text``, ``path``, ``url``,
        ``meta``, ``job_id``, ``pipeline``, ``created_at``. An empty or unknown index gives []."""
        return await self._rag_search(collection, vector, model, k)

    @abc.abstractmethod
    async def _rag_search(self, collection: str, vector: list[float], model: str, k: int) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def record_get(self, collection: str, key: str) -> dict[str, Any] | None:
        """The record ``key`` of ``collection`` (keys compare case- and space-insensitively):
        ``{"collection", "key", "data", "created_at", "updated_at"}``, or None."""

    def record_upsert(
        self,
        collection: str,
        key: str,
        *,
        fields: dict[str, Any] | None = None,
        append: dict[str, list[Any]] | None = None,
    ) -> dict[str, Any]:
        """Create or update a record in one transaction: ``fields`` are set, each list in
        ``append`` is appended to the record's list of that name (an item already there is not
        added twice, so a retried step is harmless). Returns the record, with ``created`` True
        when it did not exist before."""
        return self._record_upsert(collection, key, fields, append)

    @abc.abstractmethod
    def _record_upsert(
        self, collection: str, key: str, fields: dict[str, Any] | None, append: dict[str, list[Any]] | None
    ) -> dict[str, Any]: ...

    # --- a person in the loop ---------------------------------------------------------------

    @abc.abstractmethod
    async def ask_preference(
        self, prompt: str, a: dict[str, Any], b: dict[str, Any], *, timeout: float
    ) -> dict[str, Any] | None:
        """Ask a person which of two of this job's images shows ``prompt`` better, and wait.
        ``a`` and ``b`` are ``{"candidate": <lineage id>, "image": <artefact path>}``. The
        question is listed on the web UI's evaluation page (``/ui/evaluate``) and at
        ``GET /v1/evaluations/questions``; the answer is ``{"winner": "a" | "b" | None (a tie),
        "reason", "evaluation_id"}``, stored with the other A/B preferences. A pair of this job
        a person already judged answers at once. None when nobody answered within ``timeout``
        seconds; cancelling the job stops the wait."""


class Pipeline(abc.ABC):
    """Base class for pipelines: set ``name``, ``Params`` and implement ``run``."""

    name: ClassVar[str]
    Params: ClassVar[type[Struct]]
    description: ClassVar[str] = ""
    #: A model call whose worker process crashed (``WorkerCrashed``) is run again this many times
    #: before the step fails: the crash took the model down and the next call reloads it.
    worker_crash_retries: ClassVar[int] = 2
    #: The model roles a job uses (``model_for`` roles), each with the parameters that may name
    #: its model instead of the role's route, first given first: the daemon checks at submit that
    #: the request brings the upstream keys those models need (seed 004's 401 / 400). Models
    #: named in ``model`` / ``*_model`` parameters are checked whether listed here or not.
    model_roles: ClassVar[dict[str, tuple[str, ...]]] = {}

    @abc.abstractmethod
    async def run(self, params: Any, ctx: PipelineContext) -> Any:
        """Do the work; the return value (msgspec-encodable) is the job's result."""
