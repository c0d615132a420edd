"""The conformance checks: what every provider of a capability must do, as plain functions.

Each check takes a loaded :class:`~loom.sdk.testing.harness.Subject` and raises AssertionError
with a message that tells a plugin author what to change. :data:`CHECKS` lists them in order; the
pytest suite (:mod:`loom.sdk.testing.suite`) turns the ones that apply into tests. The ids are
documented in ``docs/plugins.md`` (a meta test keeps the table complete).
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..calls import missing_methods
from ..errors import Cancelled, InvalidRequest, LoomError, UnsupportedParameter
from ..protocols import (
    Embeddings,
    ImageJob,
    Provider,
    RerankScores,
    RunContext,
    TextChunk,
    ToolCallDelta,
    VisionScores,
)
from ..types import (
    AssistantMessage,
    Capability,
    ChatCompletionRequest,
    CompletionRequest,
    FunctionCall,
    FunctionDefinition,
    FunctionTool,
    ImagePart,
    ImageURL,
    JSONObjectFormat,
    JSONSchemaFormat,
    JSONSchemaSpec,
    NamedFunction,
    NamedToolChoice,
    TextPart,
    ToolCall,
    ToolMessage,
    UserMessage,
)
from . import json_prefix
from .harness import Subject
from .images import make_png, png_size

FINISH_REASONS = {"stop", "length", "content_filter", "tool_calls"}
NOT_AN_IMAGE = b"this is not an image"
NOT_AN_IMAGE_URI = "data:image/png;base64,dGhpcyBpcyBub3QgYW4gaW1hZ2U="  # the bytes above


@dataclass(frozen=True)
class Settings:
    """What the checks send; every field is a class attribute of ``ProviderConformance``."""

    prompt: str = "Tell me a long story about a lighthouse keeper and the sea."
    #: The text ``complete()`` continues (a story opening: instruct models answer a bare request
    #: with an end-of-text at once).
    completion_prompt: str = "Once upon a time, in a small village by the sea,"
    max_tokens: int = 8
    seed: int = 1234
    #: Whether same request + same seed must give the same output (the provider's own claim).
    deterministic: bool = False
    #: Text chunks a stream may still yield after ``ctx.cancel()`` before it must stop.
    cancel_grace: int = 1
    texts: tuple[str, ...] = (
        "The sea is calm tonight.",
        "A red fox jumps over the garden fence.",
        "Quarterly revenue grew by four percent.",
    )
    image_size: tuple[int, int] = (64, 48)
    image_steps: int = 2
    languages: tuple[str, str] = ("en", "fr")
    #: Another target language the provider knows (``translation.translates`` checks that two
    #: targets give two translations); None skips that part.
    third_language: str | None = "de"
    bad_language: str = "xx-NOT-A-LANGUAGE"
    #: What the rerank checks rank ``texts`` against (it shares words with the first one).
    rerank_query: str = "Is the sea calm tonight?"
    plugin: Any = None
    entry_point: str | None = None


@dataclass(frozen=True)
class Check:
    id: str
    capability: Capability | None
    summary: str
    run: Callable[[Subject], None] = field(repr=False)
    #: Runs only for providers that claim determinism (``deterministic = True``).
    needs_determinism: bool = False
    #: Runs only when the suite is given the plugin module (``plugin = my_plugin``).
    needs_plugin: bool = False
    #: Runs only for local providers (``local = True``): a remote API cannot report steps.
    needs_local: bool = False
    #: Runs only for providers that honour this optional parameter (``Provider.parameters``).
    needs_parameter: str | None = None

    def skip_reason(self, subject: Subject, settings: Settings) -> str | None:
        """Why this check does not apply to ``subject``, or None when it does."""
        if self.needs_determinism and not settings.deterministic:
            return "the provider does not claim deterministic = True"
        if self.needs_local and not getattr(subject.cls, "local", True):
            return "only for local providers (local = True)"
        if self.needs_parameter is not None:
            declared: frozenset[str] = getattr(subject.cls, "parameters", frozenset())
            if self.needs_parameter not in declared:
                return f"the provider does not honour {self.needs_parameter!r} (Provider.parameters)"
        return None


CHECKS: list[Check] = []
#: A conformance check: runs against a subject, raising AssertionError on a failure.
CheckFn = Callable[[Subject], None]


def check(id: str, capability: Capability | None = None, **flags: Any) -> Callable[[CheckFn], CheckFn]:
    def add(fn: CheckFn) -> CheckFn:
        summary = (fn.__doc__ or "").strip().splitlines()[0]
        CHECKS.append(Check(id, capability, summary, fn, **flags))
        return fn

    return add


def settings_of(s: Subject) -> Settings:
    return s.settings if isinstance(s.settings, Settings) else Settings()


def expect(kind: type[LoomError], fn: Callable[[], Any], what: str) -> LoomError:
    """Run ``fn``; it must raise ``kind`` (or a subclass). Returns the error."""
    try:
        fn()
    except kind as e:
        return e
    except LoomError as e:
        raise AssertionError(f"{what}: expected {kind.__name__}, got {type(e).__name__}: {e}") from e
    raise AssertionError(f"{what}: expected {kind.__name__}, but nothing was raised")


def cancelled_ctx() -> RunContext:
    ctx = RunContext()
    ctx.cancel()
    return ctx


# --- the provider class -----------------------------------------------------------------------


@check("provider.declaration")
def _declaration(s: Subject) -> None:
    """name, capabilities, Options, local and deterministic are declared the way the daemon reads them."""
    cls = s.cls
    name = getattr(cls, "name", None)
    assert isinstance(name, str) and re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name), (
        f"{cls.__name__}.name must be a lowercase provider name such as 'ollama' "
        f"(what `provider =` in [[models]] refers to), got {name!r}"
    )
    caps = getattr(cls, "capabilities", None)
    assert isinstance(caps, frozenset) and caps and all(isinstance(c, Capability) for c in caps), (
        f"{cls.__name__}.capabilities must be a non-empty frozenset of loom.sdk.Capability, got {caps!r}"
    )
    assert issubclass(cls, Provider), (
        f"{cls.__name__} must subclass loom.sdk.Provider (the daemon refuses it otherwise)"
    )
    for capability, method in missing_methods(cls):
        raise AssertionError(f"{cls.__name__} declares {capability.value} but has no {method}() method")
    for flag in ("local", "deterministic"):
        value = getattr(cls, flag, False)
        assert isinstance(value, bool), f"{cls.__name__}.{flag} must be a bool, got {value!r}"
    options = getattr(cls, "Options", msgspec.Struct)
    assert isinstance(options, type) and issubclass(options, msgspec.Struct), (
        f"{cls.__name__}.Options must be a msgspec.Struct class, got {options!r}"
    )


@check("provider.options")
def _options(s: Subject) -> None:
    """Options decode strictly from a config table: a round trip works and a misspelt key is refused."""
    options_type = getattr(s.cls, "Options", msgspec.Struct)
    if options_type is msgspec.Struct:
        return  # takes no options
    assert options_type.__struct_config__.forbid_unknown_fields, (
        f"{s.cls.__name__}.Options must be declared with forbid_unknown_fields=True, so a typo in "
        "[[models]].options stops start-up instead of being ignored"
    )
    raw = msgspec.to_builtins(s.spec.options)
    again = msgspec.convert(raw, options_type, strict=True)
    assert again == s.spec.options, f"options do not survive a round trip through a config table: {raw!r}"
    try:
        msgspec.convert({**raw, "no_such_option_xyz": 1}, options_type, strict=True)
    except msgspec.ValidationError:
        pass
    else:
        raise AssertionError(f"{options_type.__name__} accepted an unknown key 'no_such_option_xyz'")


@check("plugin.registration", needs_plugin=True)
def _registration(s: Subject) -> None:
    """The plugin's hooks match Loom's hookspecs and register_providers registers this provider."""
    import pluggy

    from .. import hookspecs

    settings = settings_of(s)
    plugin = settings.plugin
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    try:
        pm.register(plugin, name="under-test")
        pm.check_pending()  # a misspelt hook name (register_provider) fails here
    except pluggy.PluginValidationError as e:
        raise AssertionError(f"the plugin's hooks do not match Loom's hookspecs: {e}") from None
    registered: list[Any] = []
    pm.hook.register_providers(register=registered.append)
    assert s.cls in registered, (
        f"register_providers of {getattr(plugin, '__name__', plugin)!r} registered {registered!r}, not {s.cls.__name__}"
    )
    if settings.entry_point is not None:
        found = importlib.metadata.entry_points(group="loom", name=settings.entry_point)
        assert found, (
            f"no entry point {settings.entry_point!r} in the 'loom' group: add "
            f'[project.entry-points.loom] {settings.entry_point} = "your_module" and pip install the package'
        )
        loaded = next(iter(found)).load()
        assert loaded is plugin, f"entry point {settings.entry_point!r} loads {loaded!r}, not {plugin!r}"


# --- lifecycle --------------------------------------------------------------------------------


@check("lifecycle.memory")
def _memory(s: Subject) -> None:
    """estimate_bytes() is an int >= 0 before loading; once loaded, memory_bytes() is > 0 for a local provider."""
    fresh = s.call(s.cls, s.spec)  # never loaded
    estimate = s.call(fresh.estimate_bytes)
    assert isinstance(estimate, int) and not isinstance(estimate, bool) and estimate >= 0, (
        f"estimate_bytes() before load must be an int >= 0, got {estimate!r}"
    )
    held = s.call(s.build().memory_bytes)
    assert isinstance(held, int) and not isinstance(held, bool) and held >= 0, (
        f"memory_bytes() must be an int >= 0, got {held!r}"
    )
    if getattr(s.cls, "local", True):
        assert held > 0, (
            "memory_bytes() is 0 after load() for a local provider: the scheduler admits models by "
            "these numbers (set local = False for a remote service)"
        )


@check("lifecycle.reload")
def _reload(s: Subject) -> None:
    """unload() then load() again leaves a working model (the scheduler evicts and reloads)."""
    s.unload()
    s.load()
    if Capability.CHAT in s.capabilities:
        assert s.stream("chat", _chat_request(s, max_tokens=2)), "chat() produced nothing after a reload"
    elif Capability.EMBEDDING in s.capabilities:
        assert s.call(s.method("embed"), ["hello"], RunContext()).vectors, "embed() returned nothing after a reload"
    elif Capability.RERANK in s.capabilities:
        assert _rerank(s, "hello", ["hello there"]), "rerank() returned nothing after a reload"


# --- chat and completions ---------------------------------------------------------------------


def _chat_request(s: Subject, prompt: str | None = None, **kw: Any) -> ChatCompletionRequest:
    prompt = prompt or settings_of(s).prompt
    return ChatCompletionRequest(model=s.spec.id, messages=[UserMessage(content=prompt)], **kw)


def _text_call(s: Subject, kind: str, **kw: Any) -> tuple[str, tuple[Any, ...]]:
    """(method, args before ctx) for one chat or completion request, seeded so runs repeat."""
    kw.setdefault("seed", settings_of(s).seed)
    if kind == "chat":
        return "chat", (_chat_request(s, **kw),)
    prompt = settings_of(s).completion_prompt
    return "complete", (prompt, CompletionRequest(model=s.spec.id, prompt=prompt, **kw))


def _joined(chunks: list[TextChunk]) -> str:
    return "".join(c.text for c in chunks)


def _text_checks(kind: str, capability: Capability) -> None:
    @check(f"{kind}.stream", capability)
    def stream(s: Subject) -> None:
        """Streams TextChunks; only the last carries finish_reason, and some text was generated."""
        name, args = _text_call(s, kind, max_tokens=settings_of(s).max_tokens, stream=True)
        chunks = s.stream(name, *args)
        assert chunks, f"{name}() yielded nothing; the last chunk must carry finish_reason and usage"
        for i, chunk in enumerate(chunks):
            assert isinstance(chunk, TextChunk), f"{name}() chunk {i} is {type(chunk).__name__}, not loom.sdk.TextChunk"
            assert isinstance(chunk.text, str), f"{name}() chunk {i} text is {chunk.text!r}"
        for i, chunk in enumerate(chunks[:-1]):
            assert chunk.finish_reason is None, (
                f"{name}() chunk {i} of {len(chunks)} has finish_reason={chunk.finish_reason!r}: only the last may"
            )
        assert chunks[-1].finish_reason in FINISH_REASONS, (
            f"the last chunk of {name}() must have finish_reason in {sorted(FINISH_REASONS)}, "
            f"got {chunks[-1].finish_reason!r}"
        )
        assert _joined(chunks).strip(), f"{name}() generated no text for {args[0]!r:.120}"

    @check(f"{kind}.usage", capability)
    def usage(s: Subject) -> None:
        """The last chunk counts tokens: prompt_tokens > 0 and 1 <= completion_tokens <= max_tokens."""
        limit = settings_of(s).max_tokens
        name, args = _text_call(s, kind, max_tokens=limit)
        last = s.stream(name, *args)[-1]
        assert isinstance(last.prompt_tokens, int) and last.prompt_tokens > 0, (
            f"the last chunk of {name}() must carry prompt_tokens > 0, got {last.prompt_tokens!r}"
        )
        assert isinstance(last.completion_tokens, int) and 1 <= last.completion_tokens <= limit, (
            f"the last chunk of {name}() must carry 1 <= completion_tokens <= max_tokens={limit}, "
            f"got {last.completion_tokens!r}"
        )
        if last.finish_reason == "length":
            assert last.completion_tokens == limit, (
                f"finish_reason='length' but completion_tokens={last.completion_tokens} != max_tokens={limit}"
            )

    @check(f"{kind}.max_tokens", capability)
    def max_tokens(s: Subject) -> None:
        """max_tokens=2 stops the generation there, with finish_reason 'length'."""
        name, args = _text_call(s, kind, max_tokens=2)
        last = s.stream(name, *args)[-1]
        assert last.finish_reason == "length" and last.completion_tokens == 2, (
            f"{name}() with max_tokens=2 on a prompt asking for a long answer must end with "
            f"finish_reason='length' and completion_tokens=2, got {last.finish_reason!r} / {last.completion_tokens!r}"
        )

    @check(f"{kind}.deterministic", capability, needs_determinism=True)
    def deterministic(s: Subject) -> None:
        """The same request with the same seed gives the same text and usage."""
        seed = settings_of(s).seed
        runs = []
        for _ in range(2):
            name, args = _text_call(s, kind, max_tokens=settings_of(s).max_tokens, seed=seed)
            chunks = s.stream(name, *args)
            runs.append((_joined(chunks), chunks[-1].completion_tokens))
        assert runs[0] == runs[1], (
            f"{name}() with seed={seed} gave {runs[0]!r} then {runs[1]!r}; the provider claims deterministic = True"
        )

    @check(f"{kind}.seeds", capability, needs_determinism=True)
    def seeds(s: Subject) -> None:
        """Different seeds give different text (a provider that ignores the seed repeats itself)."""
        texts = set()
        for seed in (1, 2, 3):
            name, args = _text_call(s, kind, max_tokens=max(48, settings_of(s).max_tokens), seed=seed, temperature=1.0)
            texts.add(_joined(s.stream(name, *args)))
        assert len(texts) > 1, f"{name}() gave {texts.pop()!r} for seeds 1, 2 and 3; a seed must change the sampling"

    @check(f"{kind}.stop", capability, needs_determinism=True)
    def stop(s: Subject) -> None:
        """A stop string cuts the text before it, with finish_reason 'stop' (the stop string left out)."""
        limit = max(16, settings_of(s).max_tokens)
        name, args = _text_call(s, kind, max_tokens=limit)
        full = _joined(s.stream(name, *args))
        word = _stop_string(full)
        assert word is not None, f"{name}() gave too little text to test stop strings: {full!r}"
        name, args = _text_call(s, kind, max_tokens=limit, stop=[word])
        chunks = s.stream(name, *args)
        cut = _joined(chunks)
        assert word not in cut, f"{name}() with stop=[{word!r}] still generated it: {cut!r}"
        assert full.startswith(cut) and full.find(word) >= len(cut.rstrip()), (
            f"{name}() with stop=[{word!r}] gave {cut!r}; the same request without it began {full[: len(cut) + 20]!r}"
        )
        assert chunks[-1].finish_reason == "stop", (
            f"{name}() cut by a stop string must end with finish_reason='stop', got {chunks[-1].finish_reason!r}"
        )
        # Up to four stop strings: each one counts, not only the first.
        decoy = "§never generated§"
        name, args = _text_call(s, kind, max_tokens=limit, stop=[decoy, word])
        again = _joined(s.stream(name, *args))
        assert again == cut, (
            f"{name}() with stop=[{decoy!r}, {word!r}] gave {again!r}, with stop=[{word!r}] {cut!r}: "
            "every stop string must be honoured, not only the first"
        )

    @check(f"{kind}.cancel", capability)
    def cancel(s: Subject) -> None:
        """A cancelled RunContext raises Cancelled, before the stream and in the middle of it."""
        name, args = _text_call(s, kind, max_tokens=settings_of(s).max_tokens)
        try:
            chunks = s.stream(name, *args, ctx=cancelled_ctx())
        except Cancelled:
            pass
        else:
            assert not _joined(chunks), f"{name}() generated text for an already cancelled RunContext"

        grace = settings_of(s).cancel_grace
        ctx = RunContext()
        name, args = _text_call(s, kind, max_tokens=32, stream=True)
        stream = s.iterate(s.call(s.method(name), *args, ctx), f"{name}()")
        after: list[TextChunk] = []
        try:
            for chunk in stream:
                if ctx.cancelled:
                    after.append(chunk)
                    if len(after) > grace + 1:
                        break
                elif chunk.text:
                    ctx.cancel()
        except Cancelled:
            return
        finally:
            stream.close()
        assert ctx.cancelled, f"{name}() finished without a text chunk to cancel after"
        texts = [c for c in after if c.text]
        assert len(texts) <= grace, (
            f"{name}() kept streaming {len(texts)} text chunks after ctx.cancel(); call ctx.check() "
            "between tokens so the work stops (it raises Cancelled)"
        )

    @check(f"{kind}.errors", capability)
    def errors(s: Subject) -> None:
        """A request the provider cannot serve raises a Loom error (InvalidRequest), never a bare exception."""
        if kind == "chat":
            picture = UserMessage(
                content=[
                    TextPart(text="What is in this picture?"),
                    ImagePart(image_url=ImageURL(url=NOT_AN_IMAGE_URI)),
                ]
            )
            request = ChatCompletionRequest(model=s.spec.id, messages=[picture], max_tokens=4)
            expect(InvalidRequest, lambda: s.stream("chat", request), "chat() with an image part that is not an image")
        else:
            # An empty prompt is served or refused, but only ever with a Loom error.
            empty = CompletionRequest(model=s.spec.id, prompt="", max_tokens=2)
            try:
                s.stream("complete", "", empty)
            except LoomError:
                pass


def _stop_string(text: str) -> str | None:
    """A stop string from the middle of ``text`` that first occurs after its start: the middle word
    of prose, or else the longest run of up to three printable characters there (a random-weight model's
    text has no words)."""
    words = text.split()
    if len(words) >= 3:
        return words[len(words) // 2]
    for size in (3, 2, 1):
        for start in range(len(text) // 2, len(text) - size + 1):
            piece = text[start : start + size]
            if all(c.isprintable() and not c.isspace() and c != "\ufffd" for c in piece) and text.find(piece) > 0:
                return piece
    return None


_text_checks("chat", Capability.CHAT)
_text_checks("completion", Capability.COMPLETION)


@check("chat.response_format", Capability.CHAT, needs_parameter="response_format")
def _response_format(s: Subject) -> None:
    """response_format json_object gives a JSON object, json_schema one that fits the schema. An
    answer cut off by max_tokens (finish_reason "length") must be the start of one: a grammar keeps
    a model to JSON, not to closing it in time."""
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    formats = [
        ("json_object", JSONObjectFormat()),
        ("json_schema", JSONSchemaFormat(json_schema=JSONSchemaSpec(name="person", schema=schema, strict=True))),
    ]
    for label, response_format in formats:
        request = _chat_request(
            s, "Describe a person as JSON.", max_tokens=200, seed=settings_of(s).seed, response_format=response_format
        )
        chunks = s.stream("chat", request)
        text = _joined(chunks)
        cut = bool(chunks) and chunks[-1].finish_reason == "length"
        try:
            value = json_prefix.completed(text) if cut else json.loads(text)
        except ValueError:
            what = "is not the start of a JSON document" if cut else "is not JSON"
            raise AssertionError(f"chat() with response_format {label} gave text that {what}: {text!r:.200}") from None
        assert isinstance(value, dict), (
            f"chat() with response_format {label} gave {type(value).__name__}, not an object"
        )
        if label == "json_schema" and not cut:
            assert set(value) == {"name", "age"} and isinstance(value["name"], str), f"{value!r} does not fit {schema}"
            assert isinstance(value["age"], int) and not isinstance(value["age"], bool), (
                f"age is not an integer: {value!r}"
            )


# --- tool calls -------------------------------------------------------------------------------

#: The function the tool checks offer; arguments that validate name a city and one of two units.
WEATHER_TOOL = FunctionTool(
    function=FunctionDefinition(
        name="get_weather",
        description="The weather forecast for a city.",
        parameters={
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    )
)
CLOCK_TOOL = FunctionTool(
    function=FunctionDefinition(
        name="get_time", description="The time now.", parameters={"type": "object", "properties": {}}
    )
)


def _tool_request(s: Subject, *, tool_choice: Any, messages: list | None = None, **kw: Any) -> ChatCompletionRequest:
    kw.setdefault("seed", settings_of(s).seed)
    messages = messages or [UserMessage(content="What is the weather in Paris for the next two days?")]
    return ChatCompletionRequest(
        model=s.spec.id, messages=messages, tools=[WEATHER_TOOL, CLOCK_TOOL], tool_choice=tool_choice, **kw
    )


def _joined_calls(chunks: list[TextChunk], who: str) -> list[tuple[str, str, str]]:
    """(id, name, arguments) per call, checking OpenAI's streaming shape on the way."""
    calls: dict[int, list[str]] = {}
    for i, chunk in enumerate(chunks):
        for delta in chunk.tool_calls or ():
            assert isinstance(delta, ToolCallDelta), f"{who}: chunk {i} tool_calls holds {type(delta).__name__}"
            if delta.index not in calls:
                assert delta.id and delta.name, (
                    f"{who}: the first piece of tool call {delta.index} must carry its id and name, got {delta!r}"
                )
                assert delta.index == len(calls), f"{who}: tool call indices must count 0, 1, ...; got {delta.index}"
                calls[delta.index] = [delta.id, delta.name, delta.arguments]
            else:
                assert delta.id in (None, calls[delta.index][0]) and delta.name in (None, calls[delta.index][1]), (
                    f"{who}: later pieces of tool call {delta.index} must not change its id or name: {delta!r}"
                )
                calls[delta.index][2] += delta.arguments
    return [(call_id, name, arguments) for _, (call_id, name, arguments) in sorted(calls.items())]


def _valid_weather_arguments(arguments: str) -> str | None:
    """Why ``arguments`` do not validate against WEATHER_TOOL's schema, or None when they do."""
    try:
        value = json.loads(arguments)
    except ValueError as e:
        return f"not JSON ({e})"
    if not isinstance(value, dict):
        return "not a JSON object"
    extra = set(value) - {"city", "unit", "days"}
    if extra:
        return f"properties the schema does not have: {sorted(extra)}"
    if not isinstance(value.get("city"), str):
        return "'city' is missing or not a string"
    if value.get("unit") not in ("celsius", "fahrenheit"):
        return "'unit' is missing or not 'celsius' / 'fahrenheit'"
    if "days" in value and (not isinstance(value["days"], int) or isinstance(value["days"], bool)):
        return "'days' is not an integer"
    return None


def _forced_call(s: Subject, tool_choice: Any, what: str) -> None:
    request = _tool_request(s, tool_choice=tool_choice, max_tokens=96, stream=True)
    try:
        chunks = s.stream("chat", request)
    except UnsupportedParameter as e:
        # A provider that cannot force a call must refuse it by name.
        assert e.param == "tool_choice", f"chat() refused {what} naming param={e.param!r}, not 'tool_choice'"
        return
    calls = _joined_calls(chunks, f"chat() with {what}")
    assert calls, f"chat() with {what} made no tool call (text: {_joined(chunks)!r:.120})"
    assert chunks[-1].finish_reason == "tool_calls", (
        f"chat() that called a tool must end with finish_reason='tool_calls', got {chunks[-1].finish_reason!r}"
    )
    _, name, arguments = calls[0]
    assert name == "get_weather", f"chat() with {what} called {name!r}, not 'get_weather'"
    problem = _valid_weather_arguments(arguments)
    assert problem is None, f"chat() with {what}: the arguments {arguments!r} do not fit the schema: {problem}"


@check("chat.tools.named", Capability.CHAT, needs_parameter="tools")
def _tools_named(s: Subject) -> None:
    """tool_choice naming a function calls it, with arguments that fit its schema (or is refused by name)."""
    _forced_call(s, NamedToolChoice(function=NamedFunction(name="get_weather")), "tool_choice naming get_weather")


@check("chat.tools.required", Capability.CHAT, needs_parameter="tools")
def _tools_required(s: Subject) -> None:
    """tool_choice 'required' with one function calls it, with valid arguments (or is refused by name)."""
    request = _tool_request(s, tool_choice="required", max_tokens=96)
    request = msgspec.structs.replace(request, tools=[WEATHER_TOOL])
    try:
        chunks = s.stream("chat", request)
    except UnsupportedParameter as e:
        assert e.param == "tool_choice", f"chat() refused tool_choice='required' naming param={e.param!r}"
        return
    calls = _joined_calls(chunks, "chat() with tool_choice='required'")
    assert calls and calls[0][1] == "get_weather", f"chat() with tool_choice='required' called {calls!r}"
    problem = _valid_weather_arguments(calls[0][2])
    assert problem is None, f"the arguments {calls[0][2]!r} do not fit the schema: {problem}"


@check("chat.tools.auto", Capability.CHAT, needs_parameter="tools")
def _tools_auto(s: Subject) -> None:
    """tool_choice 'auto' answers with text or well-formed calls to offered functions, never both missing."""
    chunks = s.stream("chat", _tool_request(s, tool_choice="auto", max_tokens=48))
    calls = _joined_calls(chunks, "chat() with tool_choice='auto'")
    assert calls or _joined(chunks).strip() or chunks[-1].finish_reason == "length", (
        "chat() with tool_choice='auto' produced neither text nor a tool call"
    )
    for _, name, _ in calls:
        assert name in ("get_weather", "get_time"), f"chat() called {name!r}, which is not one of the tools"
    if calls and chunks[-1].finish_reason != "length":
        assert chunks[-1].finish_reason == "tool_calls", (
            f"a generation that called tools must end with finish_reason='tool_calls', got {chunks[-1].finish_reason!r}"
        )


@check("chat.tools.none", Capability.CHAT, needs_parameter="tools")
def _tools_none(s: Subject) -> None:
    """tool_choice 'none' answers in text, with no tool calls."""
    chunks = s.stream("chat", _tool_request(s, tool_choice="none", max_tokens=8))
    calls = _joined_calls(chunks, "chat() with tool_choice='none'")
    assert not calls, f"chat() with tool_choice='none' called {calls!r}"
    assert chunks[-1].finish_reason in ("stop", "length"), f"finish_reason {chunks[-1].finish_reason!r}"


@check("chat.tools.history", Capability.CHAT, needs_parameter="tools")
def _tools_history(s: Subject) -> None:
    """A conversation holding an assistant tool call and its tool result is answered."""
    call = ToolCall(
        id="call_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris", "unit": "celsius"}')
    )
    messages = [
        UserMessage(content="What is the weather in Paris?"),
        AssistantMessage(content=None, tool_calls=[call]),
        ToolMessage(content='{"forecast": "sunny, 24 degrees"}', tool_call_id="call_1"),
    ]
    chunks = s.stream("chat", _tool_request(s, tool_choice="auto", messages=messages, max_tokens=8))
    assert chunks and chunks[-1].finish_reason in FINISH_REASONS, (
        f"chat() after a tool result must end with a finish_reason in {sorted(FINISH_REASONS)}"
    )
    _joined_calls(chunks, "chat() after a tool result")


# --- embeddings -------------------------------------------------------------------------------


def _embed(s: Subject, texts: list[str], ctx: RunContext | None = None) -> list[list[float]]:
    result = s.call(s.method("embed"), texts, ctx or RunContext())
    assert isinstance(result, Embeddings), f"embed() must return loom.sdk.Embeddings, got {type(result).__name__}"
    return result.vectors


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (
        math.sqrt(sum(x * x for x in a) * sum(y * y for y in b)) or 1.0
    )


@check("embedding.vectors", Capability.EMBEDDING)
def _vectors(s: Subject) -> None:
    """One finite, unit-length vector per input, all of one size, and prompt_tokens > 0."""
    texts = list(settings_of(s).texts)
    result = s.call(s.method("embed"), texts, RunContext())
    assert isinstance(result, Embeddings), f"embed() must return loom.sdk.Embeddings, got {type(result).__name__}"
    assert len(result.vectors) == len(texts), f"embed() of {len(texts)} inputs returned {len(result.vectors)} vectors"
    sizes = {len(v) for v in result.vectors}
    assert len(sizes) == 1 and sizes != {0}, (
        f"embedding vectors must share one non-zero size, got sizes {sorted(sizes)}"
    )
    for i, vector in enumerate(result.vectors):
        assert all(isinstance(x, float) and math.isfinite(x) for x in vector), (
            f"vector {i} must be finite Python floats (convert numpy arrays with .tolist())"
        )
        norm = math.sqrt(sum(x * x for x in vector))
        assert abs(norm - 1.0) <= 1e-3, f"vector {i} has length {norm:.6f}; Loom serves unit vectors"
    assert isinstance(result.prompt_tokens, int) and result.prompt_tokens > 0, (
        f"Embeddings.prompt_tokens must count the input tokens (> 0), got {result.prompt_tokens!r}"
    )


@check("embedding.stable", Capability.EMBEDDING)
def _stable(s: Subject) -> None:
    """A text embeds the same alone and in a batch, and different texts embed differently."""
    texts = list(settings_of(s).texts)
    batch = _embed(s, texts)
    alone = _embed(s, [texts[1]])[0]
    similarity = _cosine(batch[1], alone)
    assert similarity >= 0.999, f"{texts[1]!r} embeds differently alone and in a batch (cosine {similarity:.5f})"
    assert _cosine(batch[0], batch[1]) < 0.9999, f"{texts[0]!r} and {texts[1]!r} got the same vector"


@check("embedding.cancel", Capability.EMBEDDING)
def _embedding_cancel(s: Subject) -> None:
    """embed() with a cancelled RunContext raises Cancelled."""
    expect(Cancelled, lambda: _embed(s, ["hello"], cancelled_ctx()), "embed() with a cancelled RunContext")


# --- images -----------------------------------------------------------------------------------


def _job(s: Subject, **kw: Any) -> ImageJob:
    width, height = settings_of(s).image_size
    values: dict[str, Any] = {
        "prompt": "a red lighthouse on a cliff at dusk",
        "width": width,
        "height": height,
        "n": 1,
        "seed": settings_of(s).seed,
        "steps": settings_of(s).image_steps,
    }
    values.update(kw)
    return ImageJob(**values)


def _images(s: Subject, job: ImageJob, ctx: RunContext | None = None) -> list[bytes]:
    return s.call(s.method("generate_images"), job, ctx or RunContext())


@check("image.png", Capability.IMAGE)
def _png(s: Subject) -> None:
    """generate_images() returns job.n PNGs of exactly the requested width and height."""
    job = _job(s, n=2)
    images = _images(s, job)
    assert isinstance(images, list) and len(images) == 2, f"generate_images() with n=2 returned {images!r:.80}"
    for i, image in enumerate(images):
        assert isinstance(image, bytes), f"image {i} must be bytes (PNG), got {type(image).__name__}"
        try:
            size = png_size(image)
        except ValueError as e:
            raise AssertionError(f"image {i}: {e}") from None
        assert size == (job.width, job.height), f"image {i} is {size[0]}x{size[1]}, asked for {job.width}x{job.height}"


@check("image.progress", Capability.IMAGE, needs_local=True)
def _progress(s: Subject) -> None:
    """A local generate_images() reports progress through ctx.progress(done, total) as it works."""
    seen: list[tuple[int, int]] = []
    _images(s, _job(s), RunContext(on_progress=lambda done, total, message: seen.append((done, total))))
    assert seen, "generate_images() never called ctx.progress(done, total); call it after each step"
    assert all(0 <= done <= total and total > 0 for done, total in seen), f"progress out of range: {seen}"


@check("image.deterministic", Capability.IMAGE, needs_determinism=True)
def _image_deterministic(s: Subject) -> None:
    """The same job with the same seed gives the same PNG."""
    first, second = _images(s, _job(s))[0], _images(s, _job(s))[0]
    assert first == second, f"two images with seed={settings_of(s).seed} differ; the provider claims determinism"


@check("image.seeds", Capability.IMAGE)
def _image_seeds(s: Subject) -> None:
    """Different seeds, and the n images of one job, give different pictures."""
    one, other = _images(s, _job(s, seed=1))[0], _images(s, _job(s, seed=2))[0]
    assert one != other, "generate_images() made the same PNG for seed 1 and seed 2; a seed must change the picture"
    pair = _images(s, _job(s, n=2))
    assert pair[0] != pair[1], "the two images of a job with n=2 are the same; each must have its own noise"


@check("image.previews", Capability.IMAGE)
def _image_previews(s: Subject) -> None:
    """Previews (ctx.preview) only when job.partial_images asks, at most that many, numbered 0, 1, ...
    in order, each a PNG of the requested size; none at all is fine."""
    seen: list[tuple[bytes, int]] = []

    def ctx() -> RunContext:
        return RunContext(on_preview=lambda image, index: seen.append((image, index)))

    steps = max(4, settings_of(s).image_steps)
    _images(s, _job(s, steps=steps), ctx())
    assert not seen, f"generate_images() sent {len(seen)} previews with partial_images=0; send none"
    job = _job(s, steps=steps, partial_images=2)
    _images(s, job, ctx())
    assert len(seen) <= 2, f"generate_images() sent {len(seen)} previews with partial_images=2"
    assert [index for _, index in seen] == list(range(len(seen))), f"preview indices {[i for _, i in seen]}"
    for image, index in seen:
        assert isinstance(image, bytes), f"preview {index} must be bytes (PNG), got {type(image).__name__}"
        try:
            size = png_size(image)
        except ValueError as e:
            raise AssertionError(f"preview {index}: {e}") from None
        assert size == (job.width, job.height), f"preview {index} is {size[0]}x{size[1]}"


@check("image.errors", Capability.IMAGE)
def _image_errors(s: Subject) -> None:
    """A 3x5 image and an init_image that is not an image raise InvalidRequest."""
    expect(InvalidRequest, lambda: _images(s, _job(s, width=3, height=5)), "generate_images() of a 3x5 image")
    expect(
        InvalidRequest,
        lambda: _images(s, _job(s, init_image=NOT_AN_IMAGE)),
        "generate_images() with an init_image that is not an image",
    )


@check("image.cancel", Capability.IMAGE)
def _image_cancel(s: Subject) -> None:
    """A cancelled RunContext raises Cancelled, before the first step and at the next progress report."""
    expect(Cancelled, lambda: _images(s, _job(s), cancelled_ctx()), "generate_images() with a cancelled RunContext")
    ctx: RunContext

    def cancel_on_progress(done: int, total: int, message: str) -> None:
        ctx.cancel()

    ctx = RunContext(on_progress=cancel_on_progress)
    expect(
        Cancelled,
        lambda: _images(s, _job(s, steps=max(2, settings_of(s).image_steps)), ctx),
        "generate_images() cancelled during its first step",
    )


# --- vision -----------------------------------------------------------------------------------


@check("vision.describe", Capability.VISION)
def _describe(s: Subject) -> None:
    """describe() of a PNG returns non-empty text."""
    text = s.call(s.method("describe"), make_png(48, 32), None, "normal", None, RunContext())
    assert isinstance(text, str) and text.strip(), f"describe() must return non-empty text, got {text!r}"


@check("vision.looks", Capability.VISION)
def _looks(s: Subject) -> None:
    """describe() of two different pictures gives different text: the image is read, not a stock caption."""
    texts = [
        s.call(s.method("describe"), image, None, "normal", None, RunContext())
        for image in (make_png(48, 32), make_png(48, 32, seed=120))
    ]
    assert texts[0] != texts[1], f"describe() gave {texts[0]!r} for two different pictures; it must look at the image"


@check("vision.score", Capability.VISION)
def _score(s: Subject) -> None:
    """score() returns VisionScores: clip a cosine in [-1, 1], aesthetic in [0, 10]."""
    scores = s.call(s.method("score"), make_png(48, 32), "a colour gradient", RunContext())
    assert isinstance(scores, VisionScores), f"score() must return loom.sdk.VisionScores, got {type(scores).__name__}"
    assert math.isfinite(scores.clip) and -1.0 <= scores.clip <= 1.0, (
        f"clip must be a cosine in [-1, 1], got {scores.clip}"
    )
    assert math.isfinite(scores.aesthetic) and 0.0 <= scores.aesthetic <= 10.0, (
        f"aesthetic must be on a 0-10 scale, got {scores.aesthetic}"
    )


@check("vision.errors", Capability.VISION)
def _vision_errors(s: Subject) -> None:
    """describe() and score() of bytes that are not an image raise InvalidRequest."""
    expect(
        InvalidRequest,
        lambda: s.call(s.method("describe"), NOT_AN_IMAGE, None, "normal", None, RunContext()),
        "describe() of bytes that are not an image",
    )
    expect(
        InvalidRequest,
        lambda: s.call(s.method("score"), NOT_AN_IMAGE, "text", RunContext()),
        "score() of bytes that are not an image",
    )


@check("vision.cancel", Capability.VISION)
def _vision_cancel(s: Subject) -> None:
    """describe() and score() with a cancelled RunContext raise Cancelled."""
    image = make_png(16, 16)
    expect(
        Cancelled,
        lambda: s.call(s.method("describe"), image, None, "normal", None, cancelled_ctx()),
        "describe() with a cancelled RunContext",
    )
    expect(
        Cancelled,
        lambda: s.call(s.method("score"), image, "text", cancelled_ctx()),
        "score() with a cancelled RunContext",
    )


# --- translation ------------------------------------------------------------------------------


def _translate(s: Subject, texts: list[str], source: str, target: str, ctx: RunContext | None = None) -> Any:
    return s.call(s.method("translate"), texts, source, target, ctx or RunContext())


@check("translation.texts", Capability.TRANSLATION)
def _texts(s: Subject) -> None:
    """translate() returns one non-empty string per input, in order."""
    source, target = settings_of(s).languages
    texts = ["Good morning.", "The sea is calm tonight."]
    out = _translate(s, texts, source, target)
    assert isinstance(out, list) and len(out) == len(texts), f"translate() of {len(texts)} texts returned {out!r}"
    assert all(isinstance(t, str) and t.strip() for t in out), f"translate() returned an empty or non-str item: {out!r}"


@check("translation.translates", Capability.TRANSLATION)
def _translates(s: Subject) -> None:
    """translate() into another language changes the text, and into two languages differently (no echo)."""
    source, target = settings_of(s).languages
    texts = ["The sea is calm tonight.", "Where is the railway station?"]
    out = _translate(s, texts, source, target)
    assert out != texts and all(o.strip() != t for o, t in zip(out, texts)), (
        f"translate() from {source} to {target} returned its input {out!r}; a translator must translate"
    )
    third = settings_of(s).third_language
    if third is not None:
        again = _translate(s, texts, source, third)
        assert again != out, f"translate() into {target} and into {third} gave the same {out!r}"


@check("translation.errors", Capability.TRANSLATION)
def _translation_errors(s: Subject) -> None:
    """An unknown language code raises InvalidRequest naming 'source' or 'target' as its param."""
    source, target = settings_of(s).languages
    bad = settings_of(s).bad_language
    for param, (src, tgt) in (("source", (bad, target)), ("target", (source, bad))):
        error = expect(
            InvalidRequest,
            functools.partial(_translate, s, ["Hello."], src, tgt),
            f"translate() with {param}={bad!r}",
        )
        assert error.param == param, (
            f"the error for an unknown {param} language must have param={param!r}, got {error.param!r}"
        )


@check("translation.cancel", Capability.TRANSLATION)
def _translation_cancel(s: Subject) -> None:
    """translate() with a cancelled RunContext raises Cancelled."""
    source, target = settings_of(s).languages
    expect(
        Cancelled,
        lambda: _translate(s, ["Hello."], source, target, cancelled_ctx()),
        "translate() with a cancelled RunContext",
    )


# --- rerank -----------------------------------------------------------------------------------


def _rerank(s: Subject, query: str, documents: list[str], ctx: RunContext | None = None) -> list[float]:
    result = s.call(s.method("rerank"), query, documents, ctx or RunContext())
    assert isinstance(result, RerankScores), f"rerank() must return loom.sdk.RerankScores, got {type(result).__name__}"
    return result.scores


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-4 * max(1.0, abs(a), abs(b))


@check("rerank.scores", Capability.RERANK)
def _rerank_scores(s: Subject) -> None:
    """One finite float per document, in the documents' order, and prompt_tokens an int >= 0."""
    texts = list(settings_of(s).texts)
    result = s.call(s.method("rerank"), settings_of(s).rerank_query, texts, RunContext())
    assert isinstance(result, RerankScores), f"rerank() must return loom.sdk.RerankScores, got {type(result).__name__}"
    assert len(result.scores) == len(texts), f"rerank() of {len(texts)} documents returned {len(result.scores)} scores"
    for i, score in enumerate(result.scores):
        assert isinstance(score, float) and math.isfinite(score), (
            f"score {i} must be a finite Python float (convert tensors with .tolist()), got {score!r}"
        )
    tokens = result.prompt_tokens
    assert isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0, (
        f"RerankScores.prompt_tokens must count the input tokens (>= 0), got {tokens!r}"
    )


@check("rerank.stable", Capability.RERANK)
def _rerank_stable(s: Subject) -> None:
    """A document scores the same alone, among others and in another order: the daemon may split a list."""
    query, texts = settings_of(s).rerank_query, list(settings_of(s).texts)
    together = _rerank(s, query, texts)
    backwards = _rerank(s, query, texts[::-1])[::-1]
    for i, text in enumerate(texts):
        alone = _rerank(s, query, [text])[0]
        assert _same(together[i], alone), f"{text!r} scores {together[i]} among others but {alone} alone"
        assert _same(together[i], backwards[i]), (
            f"{text!r} scores {together[i]} in one order and {backwards[i]} in another; a score is the document's own"
        )


@check("rerank.reads", Capability.RERANK)
def _rerank_reads(s: Subject) -> None:
    """Different documents get different scores, and another query changes them: both are read."""
    query, texts = settings_of(s).rerank_query, list(settings_of(s).texts)
    scores = _rerank(s, query, texts)
    assert len({round(x, 6) for x in scores}) > 1, f"every document scored {scores[0]}; rerank() must read them"
    other = _rerank(s, "Quarterly revenue and profit figures", texts)
    assert other != scores, f"two different queries gave the same scores {scores}; rerank() must read the query"


@check("rerank.errors", Capability.RERANK)
def _rerank_errors(s: Subject) -> None:
    """An empty document list raises InvalidRequest with param 'documents'."""
    error = expect(InvalidRequest, lambda: _rerank(s, "a query", []), "rerank() of no documents")
    assert error.param == "documents", f"the error for no documents must have param='documents', got {error.param!r}"


@check("rerank.cancel", Capability.RERANK)
def _rerank_cancel(s: Subject) -> None:
    """rerank() with a cancelled RunContext raises Cancelled."""
    expect(
        Cancelled,
        lambda: _rerank(s, "a query", ["a document"], cancelled_ctx()),
        "rerank() with a cancelled RunContext",
    )


def applicable(capabilities: frozenset[Capability], *, plugin: bool) -> list[Check]:
    """The checks for a provider with ``capabilities`` (plugin checks only when a plugin is given)."""
    return [
        c for c in CHECKS if (c.capability is None or c.capability in capabilities) and (plugin or not c.needs_plugin)
    ]


def run_checks(subject: Subject, ids: list[str] | None = None) -> dict[str, str | None]:
    """Run checks outside pytest: id -> None if it passed, else the failure message."""
    settings = settings_of(subject)
    results: dict[str, str | None] = {}
    for c in applicable(subject.capabilities, plugin=settings.plugin is not None):
        if (ids is not None and c.id not in ids) or c.skip_reason(subject, settings) is not None:
            continue
        try:
            c.run(subject)
        except AssertionError as e:
            results[c.id] = str(e)
        else:
            results[c.id] = None
    return results
