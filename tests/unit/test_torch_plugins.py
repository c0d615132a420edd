"""The torch plugins without models: import hygiene, options, sources, language codes, heads."""

from __future__ import annotations

import subprocess
import sys

import msgspec
import pytest
from loom.daemon.config import decode_config
from loom.daemon.services import build_services
from loom.sdk import ConfigError, ProviderError

HEAVY = ["torch", "diffusers", "transformers", "open_clip", "torchvision", "huggingface_hub", "safetensors"]
#: Every module of the torch plugins except the ``engine`` modules, which load() imports.
LIGHT_MODULES = [
    "loom.sdk.torchutil",
    "loom.sdk.torchutil.devices",
    "loom.sdk.torchutil.memory",
    "loom.sdk.torchutil.images",
    "loom.sdk.torchutil.sources",
    "loom.sdk.torchutil.provider",
    "loom.plugins.transformers",
    "loom.plugins.transformers.options",
    "loom.plugins.transformers.languages",
    "loom.plugins.transformers.text",
    "loom.plugins.transformers.embedding",
    "loom.plugins.transformers.translation",
    "loom.plugins.transformers.vision",
    "loom.plugins.diffusers",
    "loom.plugins.diffusers.options",
    "loom.plugins.diffusers.provider",
    "loom.plugins.openclip",
    "loom.plugins.openclip.options",
    "loom.plugins.openclip.provider",
]

SCRIPT = """
import importlib, sys
for name in {modules!r}:
    importlib.import_module(name)
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""


def test_plugin_modules_import_nothing_heavy():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(modules=LIGHT_MODULES, heavy=HEAVY)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "", f"heavy modules imported by the torch plugins: {out.stdout}"


def config(*models):
    return decode_config({"daemon": {"data_dir": "/tmp/loom-test-torch"}, "models": list(models)})


def test_providers_register_through_entry_points():
    loom = build_services(config())
    assert loom.plugins["transformers"].providers == [
        "transformers",
        "transformers-embedding",
        "transformers-translation",
        "transformers-vision",
        "transformers-rerank",
    ]
    assert loom.plugins["diffusers"].providers == ["diffusers"]
    assert loom.plugins["openclip"].providers == ["openclip"]


@pytest.mark.parametrize(
    "provider, options, words",
    [
        ("transformers", {"model": "gpt2", "temperature": 1}, "temperature"),
        ("transformers", {"model": ""}, "model"),
        ("transformers-translation", {"model": "x/y", "num_beams": 0}, "num_beams"),
        ("diffusers", {"model": "x/y", "steps": 0}, "steps"),
        ("openclip", {}, "model"),
    ],
)
def test_bad_options_stop_start_up_with_the_key(provider, options, words):
    with pytest.raises(ConfigError) as e:
        build_services(config({"id": "m", "provider": provider, "options": options}))
    assert "$.models[0].options" in str(e.value) and words in str(e.value)


def test_capabilities_per_provider():
    loom = build_services(
        config(
            {"id": "chat", "provider": "transformers", "options": {"model": "gpt2"}},
            {
                "id": "nllb",
                "provider": "transformers-translation",
                "options": {"model": "facebook/nllb-200-distilled-600M"},
            },
            {
                "id": "blip",
                "provider": "transformers-vision",
                "options": {"model": "Salesforce/blip-image-captioning-base"},
            },
            {"id": "sd", "provider": "diffusers", "options": {"model": "stable-diffusion-v1-5/stable-diffusion-v1-5"}},
            {"id": "clip", "provider": "openclip", "options": {"model": "ViT-L-14", "pretrained": "openai"}},
        )
    )
    caps = {e.id: sorted(c.value for c in e.capabilities) for e in loom.registry}
    assert caps == {
        "chat": ["chat", "completion", "embedding"],
        "nllb": ["translation"],
        "blip": ["chat", "vision"],
        "sd": ["image"],
        "clip": ["embedding", "rerank", "vision"],
    }


# --- sources ------------------------------------------------------------------------------------------


def test_local_folder_resolves(tmp_path):
    from loom.sdk.torchutil.sources import resolve_source

    source = resolve_source(str(tmp_path), provider="p", model_id="m")
    assert source.local and source.location == str(tmp_path.resolve())


def test_missing_local_path_names_it(tmp_path):
    from loom.sdk.torchutil.sources import resolve_source

    with pytest.raises(ProviderError) as e:
        resolve_source(str(tmp_path / "nope"), provider="p", model_id="my-model")
    assert "my-model" in e.value.message and str(tmp_path / "nope") in e.value.message


def test_offline_hub_id_not_in_cache_names_model_and_cache(tmp_path, monkeypatch):
    from loom.sdk.torchutil.sources import resolve_source

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProviderError) as e:
        resolve_source("org/model", provider="p", model_id="my-model")
    message = e.value.message
    assert "my-model" in message and "org/model" in message and str(tmp_path / "hf" / "hub") in message


def test_offline_hub_id_in_cache_resolves(tmp_path, monkeypatch):
    from loom.sdk.torchutil.sources import resolve_source, weights_bytes

    snapshot = tmp_path / "models--org--model" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"x" * 1000)
    (snapshot / "pytorch_model.bin").write_bytes(b"x" * 5000)  # a second copy: not counted
    (snapshot / "unet").mkdir()
    (snapshot / "unet" / "model.safetensors").write_bytes(b"x" * 300)
    (snapshot / "unet" / "model.fp16.safetensors").write_bytes(b"x" * 150)  # a variant: one copy counts
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    source = resolve_source("org/model", provider="p", model_id="m", cache_dir=str(tmp_path))
    assert not source.local and source.location == "org/model"
    assert weights_bytes(source) == 1300


# --- languages ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code, expected",
    [
        ("eng_Latn", "eng_Latn"),
        ("en", "eng_Latn"),
        ("en-GB", "eng_Latn"),
        ("EN", "eng_Latn"),
        ("fra", "fra_Latn"),
        ("fre", "fra_Latn"),
        (">>deu<<", "deu_Latn"),
        ("es_XX", "spa_Latn"),
        ("__ja__", "jpn_Jpan"),
        ("zh", "zho_Hans"),
        ("zh-TW", "zho_Hant"),
        ("klingon", None),
        ("xx", None),
    ],
)
def test_canonical_codes(code, expected):
    from loom.plugins.transformers.languages import canonical

    assert canonical(code) == expected


def test_language_table_finds_the_models_own_code():
    from loom.plugins.transformers.languages import LanguageTable

    m2m = LanguageTable(["en", "fr", "de", "ast"])
    assert m2m.lookup("eng_Latn") == "en" and m2m.lookup("fr-CA") == "fr" and m2m.lookup("ast") == "ast"
    assert m2m.lookup("spa_Latn") is None
    marian = LanguageTable([">>fra<<", ">>spa<<"])
    assert marian.lookup("fr") == ">>fra<<" and marian.lookup("es") == ">>spa<<"


def test_sentences_split_and_chunk_without_losing_words():
    from loom.plugins.transformers.languages import chunk_sentences, split_sentences

    text = 'It costs 3.5 euros. "Really?" she asked! Yes… fine. 你好。再见！'
    sentences = split_sentences(text)
    assert sentences == ["It costs 3.5 euros.", '"Really?"', "she asked!", "Yes…", "fine.", "你好。", "再见！"]
    words = lambda s: len(s.split())  # noqa: E731
    chunks = chunk_sentences(["one two three.", "four five.", " ".join(["w"] * 9) + "."], words, 4)
    assert all(words(c) <= 4 for c in chunks)
    assert " ".join(chunks).split() == " ".join(["one two three.", "four five.", " ".join(["w"] * 9) + "."]).split()


# --- aesthetic heads ----------------------------------------------------------------------------------


def test_aesthetic_heads_in_both_laion_formats(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("open_clip")
    from loom.plugins.openclip.engine import load_head

    linear = torch.nn.Linear(8, 1)
    torch.save(linear.state_dict(), tmp_path / "linear.pth")
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1))
    torch.save({"state_dict": {f"module.layers.{k}": v for k, v in mlp.state_dict().items()}}, tmp_path / "mlp.pth")
    x = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    with torch.no_grad():
        head = load_head(str(tmp_path / "linear.pth"), 8, provider="openclip", model_id="m")
        assert torch.allclose(head(x), linear(x))
        head = load_head(str(tmp_path / "mlp.pth"), 8, provider="openclip", model_id="m")
        assert torch.allclose(head(x), mlp.eval()(x), atol=1e-6)
    with pytest.raises(ProviderError, match="expects 8 inputs"):
        load_head(str(tmp_path / "linear.pth"), 768, provider="openclip", model_id="m")


def test_options_are_frozen_structs():
    from loom.plugins.diffusers import DiffusersOptions

    options = msgspec.convert({"model": "x/y", "cpu_offload": True}, DiffusersOptions)
    assert options.cpu_offload and options.attention_slicing is False
