"""The openclip provider on a tiny saved CLIP and LAION-format aesthetic head, over HTTP."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import openai
import pytest

pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from loom.sdk import CapabilityNotSupported, InvalidRequest, VisionScores  # noqa: E402
from loom.sdk.client import LoomClient  # noqa: E402


@pytest.fixture(scope="module")
def loom(torch_daemon):
    with LoomClient(torch_daemon.url, timeout=180) as client:
        yield client


def png_uri(colour=(20, 160, 60), size=(48, 40)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize("model", ["tiny-clip", "tiny-clip-custom"])
def test_text_and_image_embeddings_share_a_space(torch_client, model):
    r = torch_client.embeddings.create(model=model, input=["a green field", png_uri(), "a red car"])
    vectors = np.array([d.embedding for d in r.data])
    assert vectors.shape == (3, 32)  # embed_dim of the tiny CLIP
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert r.usage.prompt_tokens > 0


def test_folder_and_custom_config_give_the_same_model(torch_client):
    a = torch_client.embeddings.create(model="tiny-clip", input="same weights").data[0].embedding
    b = torch_client.embeddings.create(model="tiny-clip-custom", input="same weights").data[0].embedding
    assert np.allclose(a, b, atol=1e-5)


def test_score_is_finite_and_combined_by_alpha(loom):
    r = loom.score("tiny-clip", png_uri(), "a green field", alpha=0.25)
    assert r["object"] == "vision.score"
    assert all(isinstance(r[k], float) and math.isfinite(r[k]) for k in ("clip", "aesthetic", "combined"))
    assert 0.0 <= r["clip"] <= 1.0 and 0.0 <= r["aesthetic"] <= 10.0
    expected = VisionScores(clip=r["clip"], aesthetic=r["aesthetic"]).combined(0.25)
    assert r["combined"] == pytest.approx(expected)
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
