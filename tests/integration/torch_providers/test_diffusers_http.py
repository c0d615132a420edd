"""The diffusers provider on a tiny saved Stable Diffusion pipeline, over HTTP with ``openai``."""

from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest

pytest.importorskip("torch")

from PIL import Image

SEED = {"seed": 11, "steps": 2}


def decode(item) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(item.b64_json)))
    img.load()
    return img


def png(colour=(30, 120, 220), size=(64, 64), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, "PNG")
    return buf.getvalue()


def generate(client, **kw):
    kw.setdefault("size", "64x48")
    return client.images.generate(model="tiny-sd", prompt="a lighthouse at dusk", **kw)


def test_generates_pngs_at_the_requested_size(torch_client):
    r = generate(torch_client, n=2, extra_body=SEED)
    assert len(r.data) == 2
    for item in r.data:
        img = decode(item)
        assert img.format == "PNG" and img.size == (64, 48)


def test_same_seed_same_image_other_seed_other_image(torch_client):
    a = generate(torch_client, extra_body=SEED).data[0].b64_json
    b = generate(torch_client, extra_body=SEED).data[0].b64_json
    c = generate(torch_client, extra_body={"seed": 12, "steps": 2}).data[0].b64_json
    assert a == b and a != c


def test_an_n_image_request_gives_the_images_of_consecutive_seeds(torch_client):
    # The daemon runs n images as n one-image items (max_batch 1), image i seeded seed + i, as
    # one pipeline call of n would seed them: the same pictures either way.
    both = [item.b64_json for item in generate(torch_client, n=2, extra_body=SEED).data]
    alone = [generate(torch_client, extra_body={**SEED, "seed": SEED["seed"] + i}).data[0].b64_json for i in (0, 1)]
    assert both == alone and both[0] != both[1]


def test_negative_prompt_and_guidance(torch_client):
    r = generate(torch_client, extra_body={**SEED, "negative_prompt": "fog", "guidance_scale": 3.0})
    assert decode(r.data[0]).size == (64, 48)


def test_size_the_pipeline_cannot_make_is_400(torch_client):
    with pytest.raises(openai.BadRequestError) as e:
        generate(torch_client, size="60x60", extra_body=SEED)
    assert e.value.body["param"] == "size" and "multiples of 8" in e.value.message


def test_url_response_serves_the_png(torch_client, torch_daemon):
    r = generate(torch_client, response_format="url", extra_body=SEED)
    got = httpx.get(r.data[0].url, timeout=30)
    assert got.status_code == 200 and Image.open(io.BytesIO(got.content)).size == (64, 48)


# --- /v1/images/edits and /v1/images/variations --------------------------------------------------------


def edit(client, image: bytes, mask: bytes | None = None, **extra) -> str:
    kw = {"mask": ("mask.png", mask, "image/png")} if mask is not None else {}
    r = client.images.edit(
        model="tiny-sd",
        image=("in.png", image, "image/png"),
        prompt="make it night",
        size="64x64",
        extra_body={"seed": 3, "strength": 0.6, "steps": 4, **extra},
        **kw,
    )
    assert decode(r.data[0]).size == (64, 64)
    return r.data[0].b64_json


def square_mask(box: tuple[int, int, int, int]) -> bytes:
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), box)  # transparent = paint here, as OpenAI
    buf = io.BytesIO()
    mask.save(buf, "PNG")
    return buf.getvalue()


def test_edit_image_to_image_starts_from_the_input(torch_client):
    blue, red = edit(torch_client, png()), edit(torch_client, png(colour=(220, 30, 30)))
    assert blue != red  # same prompt, seed and steps: only the input differs
    # Not a text-to-image of the prompt either.
    plain = generate(torch_client, size="64x64", extra_body={"seed": 3, "steps": 4}).data[0].b64_json
    assert blue != plain


def test_edit_with_a_mask_inpaints_where_the_mask_says(torch_client):
    centre, corner = square_mask((16, 16, 48, 48)), square_mask((0, 0, 16, 16))
    with_centre, with_corner, without = (
        edit(torch_client, png(), centre),
        edit(torch_client, png(), corner),
        edit(torch_client, png()),
    )
    assert len({with_centre, with_corner, without}) == 3  # the mask, and where it is, change the result
    r = torch_client.images.edit(
        model="tiny-sd",
        image=("in.png", png(), "image/png"),
        mask=("mask.png", centre, "image/png"),
        prompt="a window",
        n=2,
        extra_body={"seed": 3, "steps": 3},
    )
    assert [decode(d).size for d in r.data] == [(64, 64), (64, 64)]  # size=auto: the input's


def test_an_image_with_transparent_pixels_is_its_own_mask(torch_client):
    see_through = png(colour=(30, 120, 220, 255), mode="RGBA")
    img = Image.open(io.BytesIO(see_through))
    img.paste((30, 120, 220, 0), (16, 16, 48, 48))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    # The same picture as an explicit mask gives the same edit; without the hole, another.
    assert edit(torch_client, buf.getvalue()) == edit(torch_client, see_through, square_mask((16, 16, 48, 48)))
    assert edit(torch_client, buf.getvalue()) != edit(torch_client, see_through)


def test_edit_same_seed_same_image(torch_client):
    def edit():
        return (
            torch_client.images.edit(
                model="tiny-sd",
                image=("in.png", png(), "image/png"),
                prompt="snow",
                size="64x64",
                extra_body={"seed": 9, "steps": 4},
            )
            .data[0]
            .b64_json
        )

    assert edit() == edit()


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the openai package's, for dall-e-2
def test_variation(torch_client):
    r = torch_client.images.create_variation(
        model="tiny-sd", image=("in.png", png(size=(80, 72)), "image/png"), extra_body={"seed": 1, "steps": 4}
    )
    assert decode(r.data[0]).size == (80, 64)  # auto: the input's size in multiples of 16


def test_edit_undecodable_image_is_400(torch_client):
    with pytest.raises(openai.BadRequestError) as e:
        torch_client.images.edit(model="tiny-sd", image=("in.png", b"\x89PNG broken", "image/png"), prompt="x")
    assert e.value.body["param"] == "image"


def test_edit_mask_of_another_size_is_400(torch_client):
    with pytest.raises(openai.BadRequestError) as e:
        torch_client.images.edit(
            model="tiny-sd",
            image=("in.png", png(), "image/png"),
            prompt="x",
            mask=("m.png", png(size=(32, 32), mode="RGBA"), "image/png"),
        )
    assert e.value.body["param"] == "mask"


def test_edit_unknown_field_is_400(torch_client):
    with pytest.raises(openai.BadRequestError) as e:
        torch_client.images.edit(
            model="tiny-sd", image=("in.png", png(), "image/png"), prompt="x", extra_body={"quality": "hd"}
        )
    assert e.value.code == "unsupported_parameter" and e.value.body["param"] == "quality"


def test_edit_on_a_model_without_images_is_400(torch_client):
    with pytest.raises(openai.BadRequestError) as e:
        torch_client.images.edit(model="tiny-gpt2", image=("in.png", png(), "image/png"), prompt="x")
    assert e.value.code == "capability_not_supported"
