"""Provider protocols: what a plugin implements to serve a capability.

A provider *class* subclasses :class:`Provider` and is registered once (``register_providers``);
the daemon builds one instance per configured model and hands it a :class:`ModelSpec`. The
per-capability protocols (``ChatProvider``, ...) document the methods; :mod:`loom.sdk.calls`
holds one call struct per method and checks, when imported, that the two agree.

Every method is called through the scheduler, in the worker that holds the model (see
``docs/workers.md``): by default a local model's worker is a process of its own (or a Ray actor),
where calls run on a pool of ``concurrency`` threads (an ``async`` method on an event loop run for
the call on its thread). In the daemon's process (the in-process executor: the mock, remote providers)
plain methods and generators run on the worker's threads, and the ``async`` methods of a provider
whose capability methods are all ``async`` start on the daemon's event loop. A method may be
called on several threads at once when the model's ``concurrency`` allows it. Long work checks
:meth:`RunContext.check` so cancellation lands at the next step.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

import msgspec
from msgspec import Struct

from .errors import Cancelled
from .types import Capability, ChatCompletionRequest, CompletionRequest, TokenLogprob


class ModelSpec(Struct, frozen=True, kw_only=True):
    """One configured model as its provider sees it."""

    id: str
    provider: str
    options: Any = None  # decoded as the provider's own ``Options`` struct
    plugin_options: Any = None  # the provider plugin's ``[plugins.NAME]`` section, decoded
    capabilities: frozenset[Capability] = frozenset()
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1"
    dtype: str = "auto"  # "auto", "float32", "float16", "bfloat16"
    data_dir: str = ""  # where a provider may keep files of its own
    threads: int | None = None  # CPU threads for the runtime; None: loom.sdk.threads decides


class RunContext:
    """Handed to every provider call: cancellation, progress, previews of an image being made, the
    device, and the upstream keys the client sent with its request.

    ``credentials`` maps a lower-case request header name (``x-openai-api-key``) to the key a
    client sent in it, for remote providers whose instance accepts a per-request key. They
    live only as long as the request (or the job it started) in this process: never logged,
    stored, shown, or sent to a model worker process.

    The daemon may listen too (``add_cancel_callback``, ``add_progress_callback``,
    ``add_preview_callback``): that is how a cancellation crosses to a model worker in another
    process, and how a report or a preview made there comes back. Callbacks may run on any thread and must not block.
    """

    def __init__(
        self,
        *,
        on_progress: Callable[[int, int, str], None] | None = None,
        device: str = "cpu",
        credentials: Mapping[str, str] | None = None,
        job_id: str | None = None,
        on_preview: Callable[[bytes, int], None] | None = None,
    ) -> None:
        # A flag, not a threading.Event: nothing waits on it, and an Event (a Condition and its
        # lock) is most of the cost of a context, which every call of every request makes.
        self._cancelled = False
        self._lock = threading.Lock()
        # A callback's return value is ignored (``loop.call_soon_threadsafe`` returns a handle).
        self._cancel_callbacks: list[Callable[[], object]] = []
        self._progress_callbacks: list[Callable[[int, int, str], None]] = []
        if on_progress is not None:
            self._progress_callbacks.append(on_progress)
        self._preview_callbacks: list[Callable[[bytes, int], None]] = []
        if on_preview is not None:
            self._preview_callbacks.append(on_preview)
        self.device = device
        self.credentials: dict[str, str] = dict(credentials or {})
        #: The scheduler's id of this call (``wk_...``), set by the daemon when it queues the call:
        #: ``POST /admin/work/{id}/cancel`` takes it. None until then.
        self.work_id: str | None = None
        #: The job whose step makes this call; None for a client's own request. A remote provider
        #: adapts the parameters of Loom's own calls to what its model takes, and sends a client's
        #: as the client asked.
        self.job_id = job_id

    def cancel(self) -> None:
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            callbacks, self._cancel_callbacks = self._cancel_callbacks, []
        for fn in callbacks:
            fn()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def check(self) -> None:
        """Raise :class:`Cancelled` if the work was cancelled; call it between steps."""
        if self._cancelled:
            raise Cancelled("cancelled")

    def progress(self, done: int, total: int, message: str = "") -> None:
        self.report(done, total, message)
        self.check()

    def report(self, done: int, total: int, message: str = "") -> None:
        """Deliver a progress report to the listeners without the cancellation check (the daemon
        relaying a report that a model worker made)."""
        for fn in self._progress_callbacks:
            fn(done, total, message)

    def preview(self, image: bytes, index: int) -> None:
        """Show a partial result of an image call: ``image`` is an encoded picture (PNG) of what
        the generation looks like so far, ``index`` counts the call's previews from 0.

        A provider sends at most ``ImageJob.partial_images`` of them, spread evenly over the work
        (``loom.sdk.previews.preview_steps``), and none when it is 0: each costs a decode, so
        nothing is drawn that nobody asked for. Fewer are fine (a fast generation, a remote
        service that sends none). ``POST /v1/images/generations`` with ``stream`` sends each one
        as an ``image_generation.partial_image`` event; a job shows the latest on its page. Like
        :meth:`progress` it checks for cancellation after delivering."""
        self.show(image, index)
        self.check()

    def show(self, image: bytes, index: int) -> None:
        """Deliver a preview to the listeners without the cancellation check (the daemon relaying
        a preview that a model worker made)."""
        for fn in self._preview_callbacks:
            fn(image, index)

    def add_preview_callback(self, fn: Callable[[bytes, int], None]) -> Callable[[], None]:
        """Also call ``fn(image, index)`` on every preview; returns a remover."""
        with self._lock:
            self._preview_callbacks = [*self._preview_callbacks, fn]  # copied: show() iterates
        return lambda: self._discard_preview(fn)

    def add_cancel_callback(self, fn: Callable[[], object]) -> Callable[[], None]:
        """Call ``fn`` once when the work is cancelled (at once if it is already); returns a
        function that removes it again."""
        with self._lock:
            if not self._cancelled:
                self._cancel_callbacks.append(fn)
                return lambda: self._discard(self._cancel_callbacks, fn)
        fn()
        return lambda: None

    def add_progress_callback(self, fn: Callable[[int, int, str], None]) -> Callable[[], None]:
        """Also call ``fn(done, total, message)`` on every progress report; returns a remover."""
        with self._lock:
            self._progress_callbacks = [*self._progress_callbacks, fn]  # copied: report() iterates
        return lambda: self._discard_progress(fn)

    def _discard(self, callbacks: list, fn: Callable) -> None:
        with self._lock:
            if fn in callbacks:
                callbacks.remove(fn)

    def _discard_progress(self, fn: Callable) -> None:
        with self._lock:
            self._progress_callbacks = [f for f in self._progress_callbacks if f is not fn]

    def _discard_preview(self, fn: Callable) -> None:
        with self._lock:
            self._preview_callbacks = [f for f in self._preview_callbacks if f is not fn]


class ToolCallDelta(Struct, kw_only=True, omit_defaults=True):
    """A piece of one tool call in a chat stream, in OpenAI's streaming shape.

    The first piece of each call carries its ``index`` (0, 1, ... within the answer), ``id`` and
    ``name``; later pieces of the same ``index`` carry more of the ``arguments`` text. Joined, the
    pieces of one index give the call; the daemon joins them for answers that are not streamed.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class TextChunk(Struct, kw_only=True, omit_defaults=True):
    """One piece of a generation; the last one carries ``finish_reason`` and the token counts.

    Besides text, a chat chunk may carry tool-call pieces (``tool_calls``) and, when the request
    asked for ``logprobs``, the log probabilities of the tokens whose text it carries. A
    generation that called tools ends with ``finish_reason="tool_calls"``.
    """

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    #: Of ``prompt_tokens``, how many were not evaluated because a prompt cache held their state
    #: (the final chunk carries it, with the counts; ``None`` where the provider does not know).
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    #: The request's own stop string the generation ended at (the final chunk carries it; ``None``
    #: where it ended otherwise, or the provider cannot say which).
    stop_sequence: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    logprobs: list[TokenLogprob] | None = None


class Embeddings(Struct, kw_only=True):
    vectors: list[list[float]]
    prompt_tokens: int = 0


class RerankScores(Struct, kw_only=True):
    """How relevant each document is to the query, in the documents' order: higher is more
    relevant, on the model's own scale (a cross-encoder's sigmoid, CLIP's cosine). The daemon
    sorts; a provider never reorders or drops documents."""

    scores: list[float]
    prompt_tokens: int = 0


class ImageJob(Struct, kw_only=True):
    """An image generation or image-to-image request, normalised from the HTTP routes."""

    prompt: str
    width: int
    height: int
    n: int = 1
    seed: int | None = None
    negative_prompt: str | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    init_image: bytes | None = None  # PNG/JPEG bytes for image-to-image
    mask: bytes | None = None  # white = repaint
    strength: float = 0.75
    #: Previews the caller wants (0..3): the provider sends up to this many with
    #: ``RunContext.preview`` while it works; 0, none.
    partial_images: int = 0


class VisionScores(Struct, kw_only=True):
    clip: float  # cosine similarity of image and text, 0..1
    aesthetic: float  # LAION-style aesthetic rating, 0..10

    def combined(self, alpha: float) -> float:
        """Seed 004's ranking score on a 0..100 scale: both parts scaled to 0..100, then
        ``alpha * 100*clip + (1 - alpha) * 10*aesthetic``."""
        return alpha * (100.0 * self.clip) + (1.0 - alpha) * (10.0 * self.aesthetic)


class Provider:
    """The base class of every provider: the daemon refuses a provider class that does not
    subclass it.

    Subclasses set ``name``, ``capabilities`` and ``Options`` and implement the methods of the
    capabilities they declare: each capability's protocol below (``ChatProvider``, ...) names them,
    and the call structs of :mod:`loom.sdk.calls` carry their arguments; the daemon and the
    conformance kit check a class against :func:`loom.sdk.calls.missing_methods`. Everything else
    here has a default that a provider overrides when it applies.
    """

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]
    Options: ClassVar[type[Struct]] = msgspec.Struct
    #: True when the provider runs a model on a device of this machine (it needs memory accounting
    #: and a model worker); False for remote services, which always run in the daemon's process.
    local: ClassVar[bool] = True
    #: Where this provider's models run unless a model's ``executor`` says otherwise: None follows
    #: ``[scheduler] executor`` (``"subprocess"``: a worker process per loaded model); a provider
    #: whose calls are cheap and safe may ask for ``"inprocess"`` (the mock does).
    executor: ClassVar[str | None] = None
    #: True when the same request with the same seed gives the same output; the conformance kit
    #: (``loom.sdk.testing``) then checks that it does.
    deterministic: ClassVar[bool] = False
    #: Image providers: the size ``size="auto"`` asks for, (width, height).
    default_size: ClassVar[tuple[int, int]] = (512, 512)
    #: The optional request parameters this provider honours (names from the policy table in
    #: :mod:`loom.sdk.params`, e.g. "tools", "logprobs", "top_k"). The daemon refuses any other
    #: optional parameter by name before calling the provider (or, with ``compat = "lenient"``,
    #: leaves it out and names it in the ``x-loom-ignored`` header). The default is what every
    #: provider was handed before the table existed, and had to honour or refuse itself.
    parameters: ClassVar[frozenset[str]] = frozenset({"response_format", "presence_penalty", "frequency_penalty"})

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.options = spec.options

    def estimate_bytes(self) -> int:
        """Memory the model will hold once loaded, estimated before loading (for admission)."""
        return 0

    def load(self, device: str) -> None:
        """Make the model ready on ``device`` ("cpu", "cuda:0", ...)."""

    def unload(self) -> None:
        """Free everything :meth:`load` took."""

    def memory_bytes(self) -> int:
        """Memory held now that the model is loaded; the scheduler measures it too."""
        return self.estimate_bytes()

    def concurrency(self) -> int | None:
        """Calls this model serves at once when loaded (a llamacpp model's ``parallel`` slots,
        decoded together); the scheduler starts that many. None (the default) leaves it to the
        model's ``concurrency`` setting, else 1 for local models and 16 for remote ones."""
        return None

    def blocking(self, call: Any) -> bool:
        """Whether ``call`` (a :mod:`loom.sdk.calls` struct) may wait or compute for a while. In
        the daemon's process a plain method runs on a worker thread so the event loop keeps
        serving others; a call that returns in microseconds (no sleep, no I/O, a few string
        operations) costs less run on the loop itself, the thread hop and back being most of its
        cost. Only the in-process executor asks, and only for plain methods; the default, True,
        is right for anything that runs a model."""
        return True

    # --- remote services (local = False) ------------------------------------------------------
    # The daemon checks each upstream on a timer, routes around one that is down and shows the
    # results in GET /admin/providers. A local provider keeps these defaults.

    #: Seconds between health checks (an upstream shared by several models uses the shortest).
    health_interval: float = 30.0
    #: The model's name at the upstream, when it differs from Loom's id (shown by the admin API and
    #: looked for in the upstream's model list).
    remote_model: str | None = None

    def health_key(self) -> str | None:
        """The upstream this model is served by; models with the same key share one check. None
        (the default) opts out of health checks."""
        return None

    def health_info(self) -> dict[str, Any]:
        """What ``GET /admin/providers`` may show about the upstream (its URL, where its key comes
        from and whether it is set: never the key)."""
        return {}

    async def check_health(self) -> dict[str, Any] | None:
        """Ask the upstream whether it can serve; raise a Loom error when it cannot. May return
        ``{"upstream_models": [...]}`` to say what it serves."""
        return None

    async def aclose(self) -> None:
        """Release what the instance holds for the daemon's lifetime (a remote provider's HTTP
        client); called once at shutdown for health-checked providers."""


@runtime_checkable
class ChatProvider(Protocol):
    def chat(self, request: ChatCompletionRequest, ctx: RunContext) -> Iterator[TextChunk] | AsyncIterator[TextChunk]:
        """Stream one generation for ``request`` (the daemon handles ``n`` by calling again)."""


@runtime_checkable
class CompletionProvider(Protocol):
    def complete(
        self, prompt: str, request: CompletionRequest, ctx: RunContext
    ) -> Iterator[TextChunk] | AsyncIterator[TextChunk]:
        """Stream one completion of ``prompt``."""


@runtime_checkable
class EmbeddingProvider(Protocol):
    def embed(self, inputs: list[str], ctx: RunContext) -> Embeddings:
        """Embed texts (and, for models that can, image data URIs) as unit vectors."""


@runtime_checkable
class ImageProvider(Protocol):
    def generate_images(self, job: ImageJob, ctx: RunContext) -> list[bytes]:
        """Return ``job.n`` PNG images; ``ctx.progress`` after each denoising step."""


@runtime_checkable
class VisionProvider(Protocol):
    def describe(self, image: bytes, prompt: str | None, detail: str, max_tokens: int | None, ctx: RunContext) -> str:
        """Describe an image in words."""

    def score(self, image: bytes, text: str, ctx: RunContext) -> VisionScores:
        """CLIP similarity of image and text, and an aesthetic score (0-10 scale)."""


@runtime_checkable
class RerankProvider(Protocol):
    def rerank(self, query: str, documents: list[str], ctx: RunContext) -> RerankScores:
        """Score each document's relevance to ``query``, one score per document in order. The
        query and the documents are texts, or images as ``data:image/...`` URIs for models that
        read them (CLIP); one a model cannot read is ``CapabilityNotSupported`` naming
        ``"query"`` or ``"documents"``. A document scores the same whatever the others are."""


@runtime_checkable
class TranslationProvider(Protocol):
    def translate(self, texts: list[str], source: str, target: str, ctx: RunContext) -> list[str]:
        """Translate each text; raise InvalidRequest for a language code the model lacks."""
