"""The openclip provider on a tiny saved CLIP and LAION-format aesthetic head, over HTTP."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import openai
import pytest

pytest.importorskip("torch")

from loom.sdk import CapabilityNotSupported, InvalidRequest
from loom.sdk.client import LoomClient
from PIL import Image


@pytest.fixture(scope="module")
def loom(torch_daemon):
    with LoomClient(torch_daemon.url, timeout=180) as client:
        yield client


def png_uri(colour=(20, 160, 60), size=(48, 40)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def reference(tiny_models):
    """The same tiny CLIP and aesthetic head, loaded here with open_clip and torch directly: what
    the daemon answers is checked against this, not against the daemon's own code."""
    import open_clip
    import torch

    open_clip.add_model_config(tiny_models["clip_config"])
    model, _, preprocess = open_clip.create_model_and_transforms(
        "loom-tiny-clip", pretrained=str(tiny_models["clip_checkpoint"])
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer("loom-tiny-clip")
    state = torch.load(tiny_models["aesthetic_head"], map_location="cpu")
    head = torch.nn.Sequential(
        torch.nn.Linear(32, 1024),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(1024, 128),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(128, 64),
        torch.nn.Dropout(0.1),
        torch.nn.Linear(64, 16),
        torch.nn.Linear(16, 1),
    )
    head.load_state_dict({k.removeprefix("layers."): v for k, v in state.items()})
    head.eval()

    def text(t: str) -> np.ndarray:
        with torch.no_grad():
            v = model.encode_text(tokenizer([t]))[0]
        return (v / v.norm()).numpy()

    def image(uri: str) -> np.ndarray:
        img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")
        with torch.no_grad():
            v = model.encode_image(preprocess(img).unsqueeze(0))[0]
        return (v / v.norm()).numpy()

    def aesthetic(vector: np.ndarray) -> float:
        with torch.no_grad():
            return float(head(torch.from_numpy(vector).unsqueeze(0)).squeeze())

    return text, image, aesthetic


@pytest.mark.parametrize("model", ["tiny-clip", "tiny-clip-custom"])
def test_text_and_image_embeddings_share_a_space(torch_client, loom, reference, model):
    text_of, image_of, _ = reference
    picture = png_uri()
    r = torch_client.embeddings.create(model=model, input=["a green field", picture, "a red car"])
    vectors = np.array([d.embedding for d in r.data])
    assert vectors.shape == (3, 32) and r.usage.prompt_tokens > 0  # embed_dim of the tiny CLIP
    # Each vector is CLIP's own: the text tower for texts, the image tower for the picture.
    assert np.allclose(vectors[0], text_of("a green field"), atol=1e-4)
    assert np.allclose(vectors[1], image_of(picture), atol=1e-4)
    assert np.allclose(vectors[2], text_of("a red car"), atol=1e-4)
    # One space: the image-text cosine of these vectors is the CLIP score of the pair (the tiny
    # model's cosines are small, so compare before the score's clamp to 0..1 where it bites).
    if model == "tiny-clip":
        for i, caption in ((0, "a green field"), (2, "a red car")):
            cosine = float(vectors[1] @ vectors[i])
            assert loom.score(model, picture, caption)["clip"] == pytest.approx(min(max(cosine, 0.0), 1.0), abs=1e-5)


def test_folder_and_custom_config_give_the_same_model(torch_client):
    a = torch_client.embeddings.create(model="tiny-clip", input="same weights").data[0].embedding
    b = torch_client.embeddings.create(model="tiny-clip-custom", input="same weights").data[0].embedding
    assert np.allclose(a, b, atol=1e-5)


def test_score_is_clip_and_aesthetic_combined_by_alpha(loom, reference):
    text_of, image_of, aesthetic_of = reference
    picture = png_uri()
    r = loom.score("tiny-clip", picture, "a green field", alpha=0.25)
    assert r["object"] == "vision.score"
    assert all(isinstance(r[k], float) and math.isfinite(r[k]) for k in ("clip", "aesthetic", "combined"))
    # Computed here from open_clip and the head directly, and the formula written out: CLIP's
    # cosine (0..1) and the LAION head's rating (0..10), each on 0..100, weighted by alpha.
    image = image_of(picture)
    clip = min(max(float(image @ text_of("a green field")), 0.0), 1.0)
    aesthetic = min(max(aesthetic_of(image), 0.0), 10.0)
    assert r["clip"] == pytest.approx(clip, abs=1e-5) and r["aesthetic"] == pytest.approx(aesthetic, abs=1e-4)
    assert r["combined"] == pytest.approx(0.25 * 100 * clip + 0.75 * 10 * aesthetic, abs=1e-3)
    assert loom.score("tiny-clip", png_uri(), "a green field", alpha=0.25) == r  # deterministic


def test_score_without_an_aesthetic_head_is_400(loom):
    with pytest.raises(CapabilityNotSupported) as e:
        loom.score("tiny-clip-custom", png_uri(), "a green field")
    assert "aesthetic_head" in e.value.message


def test_clip_model_cannot_describe(loom):
    with pytest.raises(CapabilityNotSupported):
        loom.describe("tiny-clip", png_uri())


def test_score_undecodable_image_is_400(loom):
    with pytest.raises(InvalidRequest) as e:
        loom.score("tiny-clip", "data:image/png;base64," + base64.b64encode(b"nope").decode(), "x")
    assert e.value.param == "image"


def test_undecodable_image_embedding_input_is_400(torch_client):
    with pytest.raises(openai.BadRequestError) as e:
        torch_client.embeddings.create(model="tiny-clip", input=["data:image/png;base64,bm9wZQ=="])
    assert e.value.body["param"] == "input"
