"""Everything that touches torch and transformers: loading, streamed generation and pooling.

Imported only from the providers' ``load`` and later, so the daemon starts without torch.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from typing import Any, cast

import torch
import transformers
from loom.sdk import InvalidRequest, LoomError, OutOfMemory, ProviderError, RunContext, TextChunk
from loom.sdk.params import DEFAULT_TEMPERATURE, DEFAULT_TOP_P
from loom.sdk.torchutil.sources import Source
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from .options import ModelOptions


def load_kwargs(options: ModelOptions, source: Source, device: str, dtype: Any) -> dict[str, Any]:
    """Keyword arguments for ``from_pretrained`` that every transformers class takes."""
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": options.trust_remote_code}
    if options.revision:
        kwargs["revision"] = options.revision
    if not source.local and options.cache_dir:
        kwargs["cache_dir"] = source.cache_dir
    if options.load_in_8bit:
        kwargs["quantization_config"] = eight_bit(device)
        kwargs["device_map"] = {"": device}  # bitsandbytes places the weights itself
    return kwargs


def tokenizer_kwargs(options: ModelOptions, source: Source) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"trust_remote_code": options.trust_remote_code}
    if options.revision:
        kwargs["revision"] = options.revision
    if not source.local and options.cache_dir:
        kwargs["cache_dir"] = source.cache_dir
    return kwargs


def import_architecture(auto_class: Any, options: ModelOptions, source: Source) -> None:
    """Import the modeling module ``auto_class`` would pick for this model (transformers imports
    architectures lazily: hundreds of MB of code that must not count as the model's memory)."""
    try:
        config = transformers.AutoConfig.from_pretrained(source.location, **tokenizer_kwargs(options, source))
        auto_class._model_mapping[type(config)]
    except Exception:
        pass


def eight_bit(device: str) -> Any:
    if not device.startswith("cuda"):
        raise ProviderError(f"options.load_in_8bit needs a CUDA device; this model is placed on {device}")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ProviderError("options.load_in_8bit needs the bitsandbytes package: pip install bitsandbytes")
    return transformers.BitsAndBytesConfig(load_in_8bit=True)


def place(model: Any, device: str, options: ModelOptions) -> Any:
    """Move a freshly loaded model to ``device`` (8-bit models are placed by bitsandbytes)."""
    if not options.load_in_8bit:
        model = model.to(device)
    return model.eval()


# --- generation -------------------------------------------------------------------------------


class Control(StoppingCriteria):
    """Stops ``generate`` at the next token when asked (stop string, client gone, cancel) and
    counts the tokens generated."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.stop = threading.Event()
        self.steps = 0
        self.last_token = -1

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        self.steps += 1
        self.last_token = int(input_ids[0, -1])
        done = self.stop.is_set() or self.ctx.cancelled
        return cast(
            torch.BoolTensor, torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)
        )


def sampling(
    temperature: float | None,
    top_p: float | None,
    *,
    top_k: int | None = None,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
) -> dict[str, Any]:
    """OpenAI's defaults (temperature 1, top_p 1) when the request leaves them out; 0 is greedy.

    top_k and min_p are left to the model's generation config unless the request sets them.
    """
    extra: dict[str, Any] = {}
    if repetition_penalty is not None:
        extra["repetition_penalty"] = repetition_penalty
    t = DEFAULT_TEMPERATURE if temperature is None else temperature
    if t == 0:
        return {"do_sample": False, **extra}
    out = {"do_sample": True, "temperature": t, "top_p": DEFAULT_TOP_P if top_p is None else top_p, **extra}
    if top_k is not None:
        out["top_k"] = top_k
    if min_p is not None:
        out["min_p"] = min_p
    return out


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (configured, getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    return ids


def stream_generate(
    model: Any,
    tokenizer: Any,
    inputs: dict[str, Any],
    *,
    prompt_tokens: int,
    max_new_tokens: int,
    sample: dict[str, Any],
    seed: int | None,
    stop: list[str],
    ctx: RunContext,
    lock: threading.RLock,
    name: str,
    set_pad: bool = True,
) -> Iterator[TextChunk]:
    """Run ``model.generate`` on a thread and yield its text as it comes, as TextChunks.

    Stop strings are matched on the decoded text (text that may be the start of a stop string is
    held back until it is known not to be); cancellation and stop strings end ``generate`` at the
    next token. The last chunk carries the finish reason and the token counts.
    """
    control = Control(ctx)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    outcome: dict[str, BaseException] = {}
    extra: dict[str, Any] = {}
    if set_pad:
        pad = getattr(tokenizer, "pad_token_id", None)
        extra["pad_token_id"] = pad if pad is not None else next(iter(eos_ids(model, tokenizer)), None)

    def run() -> None:
        try:
            with torch.inference_mode():
                model.generate(
                    **inputs,
                    **sample,
                    max_new_tokens=max_new_tokens,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([control]),
                    **extra,
                )
        except BaseException as e:  # handed to the consumer below
            outcome["error"] = e
            streamer.end()

    ctx.check()
    with lock:
        if seed is not None:
            torch.manual_seed(seed)
        thread = threading.Thread(target=run, name="loom-generate", daemon=True)
        thread.start()
        text, sent, finish = "", 0, None
        try:
            for piece in streamer:
                text += piece
                hit = find_stop(text, stop)
                if hit is not None:
                    text, finish = text[:hit], "stop"
                    break
                safe = len(text) - partial_stop(text, stop)
                if safe > sent:
                    yield TextChunk(text=text[sent:safe])
                    sent = safe
                ctx.check()
        finally:
            control.stop.set()  # a no-op once generate is done; otherwise it ends at the next token
            thread.join()
        ctx.check()
        if "error" in outcome:
            raise generation_error(outcome["error"], name)
        if len(text) > sent:
            yield TextChunk(text=text[sent:])
        completion = control.steps
        ended_on_eos = control.last_token in eos_ids(model, tokenizer)
        if finish is None:
            finish = "length" if completion >= max_new_tokens and not ended_on_eos else "stop"
        if ended_on_eos:
            completion -= 1  # the end-of-sequence token is not part of the answer
        yield TextChunk(finish_reason=finish, prompt_tokens=prompt_tokens, completion_tokens=max(0, completion))


def find_stop(text: str, stops: list[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def partial_stop(text: str, stops: list[str]) -> int:
    """Length of the longest tail of ``text`` that is the start of a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


def generation_error(e: BaseException, name: str) -> LoomError:
    if isinstance(e, LoomError):
        return e
    if isinstance(e, (MemoryError, torch.OutOfMemoryError)):
        return OutOfMemory(f"{name}: out of memory while generating: {e}")
    return ProviderError(f"{name}: generation failed: {type(e).__name__}: {e}")


def context_limit(model: Any) -> int | None:
    """The model's context length in tokens, when its config says."""
    config = getattr(model, "config", None)
    text_config = getattr(config, "text_config", None) if config is not None else None
    for cfg in (config, text_config):
        for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(cfg, attr, None) if cfg is not None else None
            if isinstance(value, int) and value > 0:
                return value
    return None


def budget(model: Any, prompt_tokens: int, wanted: int, param: str) -> int:
    """``wanted`` new tokens, cut to what the context has room for; 400 if the prompt alone fills it."""
    limit = context_limit(model)
    if limit is None:
        return wanted
    if prompt_tokens >= limit:
        raise InvalidRequest(
            f"the prompt is {prompt_tokens} tokens; this model's context is {limit} tokens",
            param=param,
            code="context_length_exceeded",
        )
    return min(wanted, limit - prompt_tokens)


# --- embeddings -------------------------------------------------------------------------------


def embed_texts(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    *,
    device: str,
    max_length: int,
    pooling: str,
    batch_size: int,
    ctx: RunContext,
    hidden_states: bool = False,
) -> tuple[list[list[float]], int]:
    """Unit-length vectors: token vectors of the last layer pooled over the attention mask.

    ``hidden_states`` reads the last hidden layer of a model whose output is logits (a causal LM).
    """
    vectors: list[list[float]] = []
    tokens = 0
    for i in range(0, len(texts), batch_size):
        ctx.check()
        batch = tokenizer(
            texts[i : i + batch_size],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(device)
        with torch.inference_mode():
            if hidden_states:
                out = model(**batch, output_hidden_states=True)
                hidden = out.hidden_states[-1]
            else:
                hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"]
        if pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        unit = torch.nn.functional.normalize(pooled.float(), dim=-1)
        vectors.extend(unit.cpu().tolist())
        tokens += int(mask.sum())
    return vectors, tokens


# --- cross-encoder scores ---------------------------------------------------------------------


def score_pairs(
    model: Any,
    tokenizer: Any,
    query: str,
    documents: list[str],
    *,
    device: str,
    max_length: int,
    batch_size: int,
    activation: str,
    ctx: RunContext,
) -> tuple[list[float], int]:
    """A cross-encoder's relevance of each (query, document) pair: its one logit, through a
    sigmoid unless ``activation`` is "none" (sentence-transformers' CrossEncoder does the same).
    Only the document is cut when a pair is over ``max_length``, so the query is always read."""
    scores: list[float] = []
    tokens = 0
    for i in range(0, len(documents), batch_size):
        ctx.check()
        docs = documents[i : i + batch_size]
        batch = tokenizer(
            [query] * len(docs),
            docs,
            padding=True,
            truncation="only_second",
            max_length=max_length,
            return_tensors="pt",
        ).to(device)
        with torch.inference_mode():
            logits = model(**batch).logits
        if logits.shape[-1] != 1:
            raise ProviderError(f"a reranker answers one logit per pair; this model gives {logits.shape[-1]}")
        values = logits[:, 0].float()
        if activation == "sigmoid":
            values = torch.sigmoid(values)
        scores.extend(values.cpu().tolist())
        tokens += int(batch["attention_mask"].sum())
    return scores, tokens
