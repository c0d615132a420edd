"""Everything that touches torch and open_clip: finding the model, loading it and the aesthetic head.

Imported only from ``OpenClipProvider.load`` and later, so the daemon starts without open_clip.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import open_clip
import torch
from loom.sdk import ProviderError
from loom.sdk.torchutil.sources import looks_like_path, resolve_source

from .options import OpenClipOptions

PRECISION = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
_PREFIXES = ("module.", "model.")


def model_reference(options: OpenClipOptions, *, provider: str, model_id: str) -> tuple[str, str | None]:
    """The (model_name, pretrained) pair for ``open_clip.create_model_and_transforms``."""
    if options.config:
        config = Path(os.path.expanduser(options.config))
        if not config.is_file():
            raise ProviderError(f"{provider}: model {model_id!r}: options.config {config} is not a file")
        open_clip.add_model_config(config)
    name = options.model
    folder = Path(os.path.expanduser(name))
    if folder.is_dir():
        if not (folder / "open_clip_config.json").is_file():
            raise ProviderError(f"{provider}: model {model_id!r}: {folder} has no open_clip_config.json")
        return f"local-dir:{folder.resolve()}", None
    if name.startswith("hf-hub:"):
        # Checks the hub cache when offline, naming the model and the cache if it is missing.
        resolve_source(name.removeprefix("hf-hub:"), provider=provider, model_id=model_id, cache_dir=options.cache_dir)
        return name, None
    if name not in open_clip.list_models():
        raise ProviderError(
            f"{provider}: model {model_id!r}: {name!r} is not a folder on this machine, an 'hf-hub:' "
            "repository or an open_clip architecture (see open_clip.list_models(); a custom one needs "
            "options.config)"
        )
    pretrained = options.pretrained
    if pretrained is None:
        raise ProviderError(
            f"{provider}: model {model_id!r}: architecture {name!r} needs options.pretrained "
            "(a tag such as 'openai' or a checkpoint file); without weights its scores mean nothing"
        )
    checkpoint = Path(os.path.expanduser(pretrained))
    if checkpoint.is_file():
        return name, str(checkpoint)
    tags = open_clip.list_pretrained_tags_by_model(name)
    if looks_like_path(pretrained) and pretrained not in tags:
        raise ProviderError(f"{provider}: model {model_id!r}: checkpoint {checkpoint} does not exist")
    if pretrained not in tags:
        raise ProviderError(
            f"{provider}: model {model_id!r}: {pretrained!r} is not a pretrained tag of {name} "
            f"(tags: {', '.join(tags) or 'none'})"
        )
    return name, pretrained


def embed_dim(name: str, model: Any) -> int:
    config = open_clip.get_model_config(name) or {}
    if isinstance(config.get("embed_dim"), int):
        return config["embed_dim"]
    return int(model.text_projection.shape[-1])


def _natural(key: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def load_head(path: str, dim: int, *, provider: str, model_id: str) -> torch.nn.Module:
    """A LAION aesthetic predictor: Linear layers from a state dict, applied in key order.

    Both published formats load: the original linear head (``weight``/``bias``) and the
    "improved" MLP (``layers.0`` ... ``layers.7``; its Dropouts are no-ops at inference and it
    has no activations, so its Linear layers in order are the whole model).
    """
    file = Path(os.path.expanduser(path))
    if not file.is_file():
        raise ProviderError(f"{provider}: model {model_id!r}: aesthetic head {file} does not exist")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(file))
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ProviderError(f"{provider}: model {model_id!r}: cannot read aesthetic head {file}: {e}") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ProviderError(f"{provider}: aesthetic head {file} is not a state dict")
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    weights = sorted((k for k, v in state.items() if k.endswith("weight") and getattr(v, "ndim", 0) == 2), key=_natural)
    if not weights:
        raise ProviderError(f"{provider}: aesthetic head {file} has no Linear layer weights")
    layers = []
    expected = dim
    for key in weights:
        w = state[key]
        out_features, in_features = w.shape
        if in_features != expected:
            raise ProviderError(
                f"{provider}: aesthetic head {file} expects {in_features} inputs at {key}, "
                f"but model {model_id!r} gives {expected} (a head for a different CLIP?)"
            )
        layer = torch.nn.Linear(in_features, out_features)
        bias = state.get(key[: -len("weight")] + "bias")
        with torch.no_grad():
            layer.weight.copy_(w.float())
            if bias is not None:
                layer.bias.copy_(bias.float())
            else:
                layer.bias.zero_()
        layers.append(layer)
        expected = out_features
    if expected != 1:
        raise ProviderError(f"{provider}: aesthetic head {file} ends in {expected} outputs, not one score")
    return torch.nn.Sequential(*layers).eval()
