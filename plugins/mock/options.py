"""The mock provider's per-model options (the ``options`` table of a ``[[models]]`` entry)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct, field

NonNegative = Annotated[float, Meta(ge=0.0)]

# NLLB-style codes (what local translation models use) and ISO 639-1 codes (what people type).
DEFAULT_LANGUAGES = (
    "eng_Latn",
    "fra_Latn",
    "deu_Latn",
    "spa_Latn",
    "ita_Latn",
    "por_Latn",
    "jpn_Jpan",
    "zho_Hans",
    "en",
    "fr",
    "de",
    "es",
    "it",
    "pt",
    "ja",
    "zh",
)


class MockOptions(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Knobs that make the mock behave like a slow, big or flaky model in tests and benchmarks."""

    #: Sleep once per call (checked for cancellation in small slices); images spread it over steps.
    latency_ms: NonNegative = 0.0
    #: Sleep before each streamed token of chat and completions.
    token_latency_ms: NonNegative = 0.0
    #: Sleep in ``load`` to simulate reading weights.
    load_seconds: NonNegative = 0.0
    #: What ``estimate_bytes`` and (once loaded) ``memory_bytes`` report, in MiB.
    memory_mb: NonNegative = 64.0
    #: Embedding size.
    dimensions: Annotated[int, Meta(ge=1, le=65536)] = 384
    #: Share of inputs that fail with ProviderError; which ones is decided by a hash of the input,
    #: so a given request always fails or always succeeds.
    fail_rate: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.0
    fail_message: str = "mock failure"
    #: Every Nth call of this model fails with ProviderError (calls counted across methods since
    #: the daemon started; 0: never): e.g. 4 on an image model that makes four images an
    #: iteration fails exactly one of them each iteration.
    fail_every: Annotated[int, Meta(ge=0)] = 0
    #: Raise OutOfMemory from ``load``.
    oom_on_load: bool = False
    #: A fixed chat reply (still cut by max tokens and stop strings); wins over response_format.
    reply: str | None = None
    #: Language codes ``translate`` accepts.
    languages: list[str] = field(default_factory=lambda: list(DEFAULT_LANGUAGES))
