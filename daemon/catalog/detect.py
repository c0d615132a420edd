"""What a model on disk is, from its files: which provider serves it and what it can do.

- a ``.gguf`` file: llama.cpp's metadata (``gguf.py``) gives the architecture, the chat template
  and whether it is an embedding model (pooling, non-causal attention);
- a folder with ``model_index.json``: a diffusers pipeline (image generation);
- a folder with ``open_clip_config.json``: an open_clip CLIP model (embeddings, image scores,
  rerank by image–text similarity);
- a folder with ``config.json``: a transformers model, told apart by ``architectures`` and
  ``model_type`` (a causal LM, a translation model, an image-to-text model, a cross-encoder
  reranker: a sequence classifier with one label, or an encoder), with chat when its tokenizer
  carries a chat template;
- a folder holding GGUF files (an LM Studio or hub download): one of them, by ``file``.

Nothing here imports torch or transformers: the files are JSON and GGUF headers. Anything that is
missing, unreadable or not recognised is an InvalidRequest naming the path and what was expected.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loom.sdk.errors import InvalidRequest

from . import gguf

EXPECTED = (
    "expected a GGUF file, a folder with config.json (transformers), model_index.json (diffusers) "
    "or open_clip_config.json (open_clip), or a Hugging Face hub id (org/name)"
)
TRANSLATION_TYPES = {"m2m_100", "marian", "mbart", "nllb_moe", "nllb-moe"}
#: Model types that read images and write text without ``vision_config`` in their config.
VISION_TYPES = {"blip", "blip-2", "instructblip", "git", "pix2struct", "vision-encoder-decoder"}
#: llama.cpp's LLAMA_POOLING_TYPE_RANK: a classification head scores (query, document) pairs.
RANK_POOLING = 4
_SHARD = re.compile(r"-\d{5}-of-(\d{5})\.gguf$", re.IGNORECASE)
_QUANT = re.compile(r"(?:^|[-_.])(I?Q\d+(?:_[A-Z0-9]+)*|BF16|F16|F32)(?=[-.])", re.IGNORECASE)


@dataclass
class Detected:
    """A recognised model: the ``[[models]]`` fields to serve it, and what was read to decide."""

    kind: str  # "gguf", "transformers", "diffusers", "open_clip"
    provider: str
    capabilities: list[str]
    options: dict[str, Any]
    location: Path  # the file or folder read
    name: str  # a suggested model id
    size: int = 0  # bytes on disk
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        facts = ", ".join(f"{v}" for v in self.details.values() if v not in (None, "", False))
        return f"{self.kind}{f' ({facts})' if facts else ''}"


def suggest_id(name: str) -> str:
    """A model id from a file, folder or repository name: lowercase, ``.gguf`` dropped."""
    name = _SHARD.sub(".gguf", name)
    name = re.sub(r"\.gguf$", "", name, flags=re.IGNORECASE).rsplit("/", 1)[-1]
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._") or "model"


def quant_label(filename: str) -> str:
    """The quantisation a GGUF file name states ("Q4_K_M", "F16"), or the file name."""
    m = _QUANT.search(Path(filename).name)
    return m.group(1).upper() if m else Path(filename).name


def disk_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (cache symlinks followed)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def detect_path(path: Path, *, file: str | None = None) -> Detected:
    """Recognise the model at ``path`` (a file or folder); InvalidRequest when it cannot."""
    if not path.exists():
        raise InvalidRequest(f"{path}: no such file or folder; {EXPECTED}", param="source")
    if path.is_file():
        return _gguf(path)
    try:
        names = {p.name for p in path.iterdir()}
    except OSError as e:
        raise InvalidRequest(f"cannot read the folder {path}: {e.strerror or e}", param="source") from None
    if file is not None:
        return _gguf(pick_gguf(path, file))
    if "model_index.json" in names:
        return _diffusers(path)
    if "open_clip_config.json" in names:
        return _open_clip(path)
    if "config.json" in names:
        return _transformers(path)
    ggufs = gguf_files(path)
    if ggufs:
        return _gguf(pick_gguf(path, None, ggufs))
    raise InvalidRequest(
        f"{path} holds no model Loom recognises (no config.json, model_index.json, open_clip_config.json "
        f"or .gguf file); {EXPECTED}",
        param="source",
    )


def gguf_files(folder: Path) -> list[Path]:
    """The GGUF model files under ``folder`` (projectors left out), first shard only."""
    out = []
    for p in sorted(folder.rglob("*.gguf")):
        shard = _SHARD.search(p.name)
        if "mmproj" in p.name.lower() or (shard and not p.name.lower().endswith(f"-00001-of-{shard.group(1)}.gguf")):
            continue
        out.append(p)
    return out


def pick_gguf(folder: Path, file: str | None, ggufs: list[Path] | None = None) -> Path:
    """One GGUF under ``folder``: the only one, or the one ``file`` names (a file name or a
    quantisation such as ``Q4_K_M``); InvalidRequest listing the choices otherwise."""
    ggufs = gguf_files(folder) if ggufs is None else ggufs
    if file is not None:
        direct = folder / file
        if direct.is_file():
            return direct
        matches = [p for p in ggufs if p.name == file or quant_label(p.name).lower() == file.lower()]
        if len(matches) == 1:
            return matches[0]
    elif len(ggufs) == 1:
        return ggufs[0]
    choices = ", ".join(f"{quant_label(p.name)} ({p.relative_to(folder)})" for p in ggufs) or "none"
    what = f"no GGUF file matches {file!r}" if file is not None else "several GGUF files"
    raise InvalidRequest(f"{folder}: {what}; choose one with `file` (--file): {choices}", param="file")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InvalidRequest(f"cannot read {path}: {e.strerror or e}", param="source") from None
    except ValueError as e:
        raise InvalidRequest(f"{path} is not valid JSON ({e})", param="source") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"{path} is not a JSON object", param="source")
    return data


def _gguf(path: Path) -> Detected:
    meta, n_params = gguf.read_metadata(path)
    arch = meta.get("general.architecture", "")
    if meta.get("general.type") == "adapter":
        raise InvalidRequest(f"{path} is a LoRA adapter, not a model; expected a GGUF model", param="source")
    if meta.get(f"{arch}.pooling_type") == str(RANK_POOLING):
        raise InvalidRequest(
            f"{path} is a reranker (llama.cpp pooling type rank), which Loom's llama.cpp provider does not "
            "serve; add the model's transformers folder instead (a ...ForSequenceClassification with one "
            "label is served by transformers-rerank)",
            param="source",
        )
    embedding_only = f"{arch}.pooling_type" in meta or meta.get(f"{arch}.attention.causal") == "false"
    chat = "tokenizer.chat_template" in meta
    capabilities = ["embedding"] if embedding_only else (["chat"] if chat else []) + ["completion", "embedding"]
    details = {
        "name": meta.get("general.name"),
        "architecture": arch,
        "parameters": _count(n_params),
        "quantisation": quant_label(path.name) if _QUANT.search(path.name) else _file_type(meta),
        "context": f"context {meta[f'{arch}.context_length']}" if f"{arch}.context_length" in meta else None,
        "chat template": "chat template" if chat else "no chat template",
    }
    return Detected(
        kind="gguf",
        provider="llamacpp",
        capabilities=capabilities,
        options={"path": str(path)},
        location=path,
        name=suggest_id(path.name),
        size=path.stat().st_size,
        details=details,
    )


def _file_type(meta: dict[str, str]) -> str | None:
    try:
        import llama_cpp

        code = int(meta.get("general.file_type", ""))
    except (ImportError, ValueError):
        return None
    for name in dir(llama_cpp):
        if name.startswith("LLAMA_FTYPE_MOSTLY_") and getattr(llama_cpp, name) == code:
            return name.removeprefix("LLAMA_FTYPE_MOSTLY_")
    return None


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit} parameters"
    return f"{n} parameters"


def _diffusers(folder: Path) -> Detected:
    index = _read_json(folder / "model_index.json")
    pipeline = str(index.get("_class_name", ""))
    if not pipeline.endswith("Pipeline") or any(k in pipeline for k in ("Audio", "Video", "Music")):
        raise InvalidRequest(
            f"{folder}/model_index.json names {pipeline or 'no pipeline'}; expected an image-generation "
            "pipeline (Stable Diffusion, SDXL, SD 3, Flux, ...)",
            param="source",
        )
    return Detected(
        kind="diffusers",
        provider="diffusers",
        capabilities=["image"],
        options={"model": str(folder)},
        location=folder,
        name=suggest_id(folder.name),
        size=disk_size(folder),
        details={"pipeline": pipeline},
    )


def _open_clip(folder: Path) -> Detected:
    config = _read_json(folder / "open_clip_config.json")
    model_cfg = config.get("model_cfg")
    if not isinstance(model_cfg, dict):
        raise InvalidRequest(
            f"{folder}/open_clip_config.json has no model_cfg; expected open_clip's format", param="source"
        )
    return Detected(
        kind="open_clip",
        provider="openclip",
        capabilities=["embedding", "vision", "rerank"],
        options={"model": str(folder)},
        location=folder,
        name=suggest_id(folder.name),
        size=disk_size(folder),
        details={"embed_dim": f"{model_cfg.get('embed_dim')}-d embeddings" if model_cfg.get("embed_dim") else None},
    )


def has_chat_template(folder: Path) -> bool:
    """Whether the tokenizer saved in ``folder`` carries a chat template."""
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    config = folder / "tokenizer_config.json"
    return config.is_file() and bool(_read_json(config).get("chat_template"))


def num_labels(config: dict[str, Any]) -> int:
    """A classifier's labels as transformers counts them: ``num_labels``, else ``id2label``'s, else 2."""
    if isinstance(config.get("num_labels"), int):
        return config["num_labels"]
    labels = config.get("id2label")
    return len(labels) if isinstance(labels, dict) and labels else 2


def _transformers(folder: Path) -> Detected:
    config = _read_json(folder / "config.json")
    architectures = [str(a) for a in config.get("architectures") or []]
    model_type = str(config.get("model_type", ""))
    arch = architectures[0] if architectures else ""
    details: dict[str, Any] = {"architecture": arch or None, "model_type": model_type or None}
    if model_type in TRANSLATION_TYPES or arch.endswith("MTModel"):
        provider, capabilities = "transformers-translation", ["translation"]
    elif arch.endswith("ForSequenceClassification") and num_labels(config) == 1:
        provider, capabilities = "transformers-rerank", ["rerank"]
    elif arch.endswith(("ForImageTextToText", "ForVision2Seq")) or (
        arch.endswith("ForConditionalGeneration") and ("vision_config" in config or model_type in VISION_TYPES)
    ):
        provider, capabilities = "transformers-vision", ["vision", "chat"]
    elif arch.endswith(("ForCausalLM", "LMHeadModel")):
        chat = has_chat_template(folder)
        details["chat template"] = "chat template" if chat else "no chat template"
        provider, capabilities = "transformers", (["chat"] if chat else []) + ["completion", "embedding"]
    elif (folder / "modules.json").is_file() or arch.endswith(("Model", "ForMaskedLM")):
        provider, capabilities = "transformers-embedding", ["embedding"]
    else:
        found = ", ".join(architectures) or "none"
        raise InvalidRequest(
            f"{folder}/config.json declares architectures [{found}] (model_type {model_type or '?'}), which no "
            "Loom provider serves; expected a causal LM (...ForCausalLM), a translation model (NLLB/M2M100, "
            "Marian, mBART), an image-to-text model (BLIP, LLaVA, ...ForImageTextToText), a reranker "
            "(...ForSequenceClassification with one label) or an encoder (...Model, ...ForMaskedLM, "
            "sentence-transformers); `provider` (--provider) chooses one by hand",
            param="source",
        )
    return Detected(
        kind="transformers",
        provider=provider,
        capabilities=capabilities,
        options={"model": str(folder)},
        location=folder,
        name=suggest_id(folder.name),
        size=disk_size(folder),
        details=details,
    )
