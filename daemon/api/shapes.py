"""The bodies Loom's own routes answer with, as the OpenAPI document describes them.

The OpenAI-shaped routes answer with the wire types of :mod:`loom.sdk.types` and
:mod:`loom.sdk.responses`; the routes below build their answers as dicts (views of jobs, stores
and the scheduler), and these Structs say what those dicts hold. Each lists the fields a client
can rely on; where a part is open-ended (a pipeline's params and result, a plugin's options, the
scheduler's per-device detail) it is an object of any shape. The fuzz test
(``tests/integration/test_openapi_fuzz.py``) checks every answer against them.
"""

from __future__ import annotations

from typing import Any, Literal

from msgspec import Struct

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]


class Health(Struct):
    status: Literal["ok"]
    models: int


# --- pipelines and jobs ---------------------------------------------------------------------------


class Pipeline(Struct):
    name: str
    object: Literal["pipeline"]
    plugin: str
    description: str
    #: The JSON schema of the pipeline's parameters (the body of ``POST /v1/pipelines/{name}``).
    params_schema: dict[str, Any]


class PipelineList(Struct):
    object: Literal["list"]
    data: list[Pipeline]


class JobError(Struct):
    type: str
    message: str
    code: str | None = None
    param: str | None = None
    #: The ``ctx.step`` that failed, if any.
    step: str | None = None


class JobSummary(Struct):
    id: str
    object: Literal["job"]
    pipeline: str
    state: JobState
    stage: str
    progress: float
    message: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    output_dir: str
    output_url: str
    error: JobError | None
    #: Among queued jobs, a higher priority runs first.
    priority: int
    #: A queued job's place among the queued (1: it starts next); null once it runs.
    position: int | None


class JobArtifact(Struct):
    path: str
    name: str
    media_type: str
    bytes: int
    sha256: str
    url: str


class Job(JobSummary):
    params: dict[str, Any]
    result: Any
    timings: dict[str, Any]
    usage: dict[str, Any]
    artifacts: list[JobArtifact]
    last_event_id: int


class JobList(Struct):
    object: Literal["list"]
    data: list[JobSummary]
    has_more: bool


class Lineage(Struct):
    object: Literal["lineage"]
    job_id: str
    state: JobState
    winner: str | None
    path: list[str]
    nodes: list[dict[str, Any]]
    tree: list[dict[str, Any]]


class JobEvent(Struct):
    """The ``data`` of each server-sent event of ``GET /v1/jobs/{job_id}/events``; the SSE
    ``event`` is its ``type`` and the SSE ``id`` its ``id``."""

    job_id: str
    id: int
    type: str
    data: dict[str, Any]
    created_at: float


class Artifact(Struct):
    object: Literal["artifact"]
    job_id: str
    path: str
    name: str
    media_type: str
    bytes: int
    created_at: float
    url: str


class ArtifactList(Struct):
    object: Literal["list"]
    data: list[Artifact]
    has_more: bool


# --- retrieval and records --------------------------------------------------------------------------


class RagIndex(Struct):
    name: str
    collection: str
    model: str
    dim: int
    count: int
    indexed: int
    loaded: bool
    error: str | None


class RagStats(Struct):
    object: Literal["rag.stats"]
    backend: Literal["faiss", "numpy"]
    items: int
    collections: list[str]
    indices: list[RagIndex]


class RagHit(Struct):
    id: int
    collection: str
    model: str
    score: float
    kind: Literal["text", "image"]
    text: str
    path: str | None
    url: str | None
    job_id: str | None
    pipeline: str | None
    meta: dict[str, Any]
    created_at: float
    #: The reranker's score, when the search was reranked (``score`` stays the vector search's).
    rerank_score: float | None = None


class RagQuery(Struct):
    kind: Literal["text", "image"]
    collections: list[str]
    k: int


class RagSearchResult(Struct):
    object: Literal["list"]
    query: RagQuery
    models: list[str]
    #: The rerank model that ordered ``data``; None when the search was not reranked.
    reranked_by: str | None
    data: list[RagHit]


class Persona(Struct):
    object: Literal["persona"]
    name: str
    key: str
    prompt: str | None
    motto: str | None
    image: dict[str, Any] | None
    images_count: int
    mottos_count: int
    created_at: float
    updated_at: float


class PersonaList(Struct):
    object: Literal["list"]
    data: list[Persona]
    has_more: bool


# --- evaluations ----------------------------------------------------------------------------------


class EvaluatedImage(Struct):
    """One side of an A/B preference: a job's image, and the lineage candidate it is (None for a
    pipeline without lineage)."""

    job_id: str
    candidate: str | None
    image: str
    image_url: str


class Evaluation(Struct):
    id: str
    object: Literal["evaluation"]
    created_at: float
    prompt: str
    a: EvaluatedImage
    b: EvaluatedImage
    choice: Literal["a", "b", "tie"]
    #: The side chosen; None for a tie.
    preferred: EvaluatedImage | None
    reason: str | None
    #: Where the preference was made: "api", "ui", or "judge" (the answer to a job's question).
    source: str
    #: The question it answered, if any.
    question: str | None


class EvaluationList(Struct):
    object: Literal["list"]
    data: list[Evaluation]
    has_more: bool


class Question(Struct):
    """A pair a running job waits on a person for; ``POST /v1/evaluations`` with ``question``
    answers it."""

    id: str
    object: Literal["evaluation.question"]
    job_id: str
    prompt: str
    a: EvaluatedImage
    b: EvaluatedImage
    created_at: float
    expires_at: float
    seconds_left: float


class QuestionList(Struct):
    object: Literal["list"]
    data: list[Question]


# --- admin ----------------------------------------------------------------------------------------


class ClusterNode(Struct):
    """One machine of the Ray cluster (``executor = "ray"``, docs/ray.md)."""

    name: str
    #: Ray's node id.
    id: str
    address: str
    #: Whether Loom places models there; when not, ``error`` says why (Loom missing there).
    usable: bool
    error: str | None
    #: What it offers as Ray counts it (``CPU``, ``GPU``, ``memory``, custom resources).
    resources: dict[str, float]
    labels: dict[str, str]
    #: Host memory in bytes, measured on the node (None when it could not be measured).
    memory: int | None
    gpus: int
    #: Its devices' names ("gpu-b/cpu", "gpu-b/cuda:0").
    devices: list[str]


class SchedulerState(Struct):
    """``GET /admin/scheduler``: one entry per device (budget, used, free, resident models, queue,
    running work; a cluster node's device also names its ``node``), and on a Ray cluster its
    nodes; the README's admin section describes the fields."""

    devices: list[dict[str, Any]]
    #: Only with a cluster executor (``executor = "ray"``).
    nodes: list[ClusterNode] | None = None


class SchedulerEvent(Struct):
    """The ``data`` of each event of ``GET /admin/events`` (its SSE ``event`` is the ``type``)."""

    type: str


class ModelState(Struct):
    model: str
    #: Where it runs; a model on a Ray cluster that is resident nowhere has none yet.
    device: str | None
    loaded: bool
    pinned: bool
    running: int
    #: Calls it runs at once (its ``concurrency``, else ``Provider.concurrency()``: a llamacpp
    #: model's ``parallel`` slots).
    slots: int
    queued: int
    #: The cluster node of its device (Ray only).
    node: str | None = None


class Unloaded(ModelState, kw_only=True):
    unloaded: bool


class WorkCancelled(Struct):
    id: str
    cancelled: Literal[True]


class ProvidersOverview(Struct):
    object: Literal["providers"]
    upstreams: list[dict[str, Any]]
    models: list[dict[str, Any]]
    routes: dict[str, Any]
    switches: dict[str, Any]


class Switched(Struct):
    switches: dict[str, Any]


class ModelRecord(Struct):
    id: str
    aliases: list[str]
    provider: str
    capabilities: list[str]
    description: str | None
    options: dict[str, Any] | None


class ModelRecordList(Struct):
    object: Literal["list"]
    config: str | None
    data: list[ModelRecord]


class ModelRemoved(Struct):
    id: str
    deleted: Literal[True]


class ModelsReloaded(Struct):
    added: list[str]
    removed: list[str]
    changed: list[str]
    #: Config sections that changed and take effect at the next start.
    restart_needed: list[str]
