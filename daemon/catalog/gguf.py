"""A GGUF file's metadata, read by llama.cpp itself (the runtime that will serve it).

llama.cpp loads the file with ``vocab_only``: it parses the header, the key/values and the
vocabulary and reads no weights, so this takes a fraction of a second even for a large model. A
file llama.cpp cannot load is refused here, with llama.cpp's own reason (an unknown architecture,
a truncated file), before it reaches the config.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from loom.sdk.errors import InvalidRequest

MAGIC = b"GGUF"
#: llama.cpp's log callback is process-wide: one metadata read swaps it at a time.
_LOG_LOCK = threading.Lock()


def is_gguf(path: Path) -> bool:
    """Whether ``path`` starts with GGUF's magic bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


@dataclass(frozen=True)
class Facts:
    """What a GGUF file says about its model."""

    #: The key/value metadata, values as llama.cpp writes them as strings.
    meta: dict[str, str]
    n_params: int
    #: Fill-in-the-middle tokens as text (prefix, suffix, middle), where the vocabulary has them.
    fim: tuple[str, str, str] | None


def read_metadata(path: Path) -> tuple[dict[str, str], int]:
    """(key/value metadata as strings, parameter count) of the GGUF model at ``path``.

    Raises InvalidRequest naming the path and llama.cpp's reason when it cannot be loaded.
    """
    facts = read_facts(path)
    return facts.meta, facts.n_params


def read_facts(path: Path) -> Facts:
    """The metadata, parameter count and fill-in-the-middle tokens of the GGUF model at ``path``
    (InvalidRequest as :func:`read_metadata`)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise InvalidRequest(f"cannot read {path}: {e.strerror or e}", param="source") from None
    if head != MAGIC:
        raise InvalidRequest(
            f"{path} is not a GGUF file (it does not start with 'GGUF'); expected a llama.cpp model (.gguf)",
            param="source",
        )
    import llama_cpp

    with _LOG_LOCK:
        messages: list[str] = []
        restore = _capture_log(messages)
        try:
            params = llama_cpp.llama_model_default_params()
            params.vocab_only = True
            model = llama_cpp.llama_model_load_from_file(os.fsencode(path), params)
        finally:
            restore()
    if not model:
        reason = "; ".join(m for m in messages if "error" in m.lower() or "unknown" in m.lower()) or "no reason given"
        hint = ""
        if "clip" in reason or "mmproj" in path.name.lower():
            hint = " (this looks like a multimodal projector, mmproj, which goes with a model, not a model)"
        raise InvalidRequest(
            f"llama.cpp cannot load {path} as a model{hint}: {reason}; expected a GGUF language or embedding model",
            param="source",
        )
    try:
        return Facts(_key_values(llama_cpp, model), int(llama_cpp.llama_model_n_params(model)), _fim(llama_cpp, model))
    finally:
        llama_cpp.llama_model_free(model)


def _key_values(llama_cpp, model) -> dict[str, str]:
    out: dict[str, str] = {}
    size = 1024
    buffer = ctypes.create_string_buffer(size)
    for i in range(llama_cpp.llama_model_meta_count(model)):
        values = []
        for read in (llama_cpp.llama_model_meta_key_by_index, llama_cpp.llama_model_meta_val_str_by_index):
            n = read(model, i, buffer, size)
            if n >= size:
                size = n + 1
                buffer = ctypes.create_string_buffer(size)
                read(model, i, buffer, size)
            values.append(buffer.value.decode("utf-8", errors="replace"))
        out[values[0]] = values[1]
    return out


def _fim(llama_cpp, model) -> tuple[str, str, str] | None:
    """The text of the prefix, suffix and middle tokens llama.cpp found in the vocabulary."""
    vocab = llama_cpp.llama_model_get_vocab(model)
    ids = (
        llama_cpp.llama_vocab_fim_pre(vocab),
        llama_cpp.llama_vocab_fim_suf(vocab),
        llama_cpp.llama_vocab_fim_mid(vocab),
    )
    if any(i < 0 for i in ids):
        return None
    pre, suf, mid = (llama_cpp.llama_vocab_get_text(vocab, i).decode("utf-8", errors="replace") for i in ids)
    return pre, suf, mid


def _capture_log(messages: list[str]):
    """Send llama.cpp's log lines to ``messages`` instead of stderr; returns the undo."""
    import llama_cpp

    try:
        from llama_cpp._logger import llama_log_callback as default
    except ImportError:  # a llama-cpp-python without it: leave its log alone
        return lambda: None

    @llama_cpp.llama_log_callback
    def collect(level, text, user_data):
        messages.append(text.decode("utf-8", errors="replace").strip())

    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))

    def restore() -> None:
        llama_cpp.llama_log_set(default, ctypes.c_void_p(0))
        collect_ref.clear()

    collect_ref = [collect]  # keep the ctypes callback alive until it is swapped back
    return restore
