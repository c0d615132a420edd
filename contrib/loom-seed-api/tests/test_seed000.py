"""Seed 000's generator routes with its front end's requests (``api/router_generator/...`` bodies
``{Id, Prompt, Audience}``, ``{Text, Tgt_lang}``, ...) and its Socket.IO protocol, spoken by
python-socketio's client: ``joinRoom`` with ``<Id>_<Generator>``, then ``Profile_Response``
``{Status, Message}`` in that room."""

from __future__ import annotations

import asyncio
import base64

import httpx
import socketio
from loom.sdk.testing import make_png, png_size


async def generate(loom, generator: str, body: dict, user: str = "user-1", timeout: float = 60) -> tuple[dict, dict]:
    """What the front end does: join the room, post, wait for Profile_Response."""
    sio = socketio.AsyncClient()
    got: asyncio.Queue = asyncio.Queue()
    sio.on("Profile_Response", got.put_nowait)
    await sio.connect(loom.url, transports=["websocket"])
    try:
        await sio.emit("joinRoom", f"{user}_{generator}")
        await asyncio.sleep(0.2)  # the front end awaited its emit; give the join a moment
        async with httpx.AsyncClient(base_url=loom.url, timeout=60) as http:
            reply = (await http.post(f"/api/router_generator/{generator}", json={"Id": user, **body})).json()
        pushed = await asyncio.wait_for(got.get(), timeout)
    finally:
        await sio.disconnect()
    return reply, pushed


def test_grok_text_generator_answers_at_once_and_pushes_the_story(loom):
    body = {"Prompt": "Create a complete and finished story about two friends", "Audience": "children"}
    reply, pushed = asyncio.run(generate(loom, "Grok_Text_Generator", body))
    assert reply == {"Status": True, "Response": "Please wait a moment"}
    assert pushed["Status"] is True and pushed["Message"].startswith("[Title]: ")
    assert "[Content]: " in pushed["Message"]


def test_grok_image_generator_pushes_a_data_uri_with_its_number(loom):
    reply, pushed = asyncio.run(generate(loom, "Grok_Image_Generator", {"Prompt": "A fox in a library", "Number": 2}))
    assert reply["Status"] is True
    assert pushed["Status"] is True and pushed["Number"] == 2
    assert png_size(base64.b64decode(pushed["Message"].split(",", 1)[1])) == (512, 512)


def test_grok_description_image_takes_bare_base64(loom):
    picture = base64.b64encode(make_png(40, 30)).decode()
    reply, pushed = asyncio.run(generate(loom, "Grok_Description_Image", {"Prompt": picture}))
    assert reply["Status"] is True and pushed["Status"] is True and pushed["Message"].strip()


def test_only_the_users_room_hears_it(loom):
    async def run() -> bool:
        other = socketio.AsyncClient()
        heard: list = []
        other.on("Profile_Response", heard.append)
        await other.connect(loom.url)
        await other.emit("joinRoom", "user-2_Grok_Text_Generator")
        await generate(loom, "Grok_Text_Generator", {"Prompt": "a short tale"}, user="user-3")
        await asyncio.sleep(0.3)
        await other.disconnect()
        return bool(heard)

    assert asyncio.run(run()) is False


def test_gpt2_and_translate_answer_over_http(client):
    story = client.post(
        "/api/router_generator/Gpt2_Text_Generator", json={"Prompt": "Write a short story", "Audience": "young"}
    )
    assert story.status_code == 200 and story.json()["Status"] is True and story.json()["Response"].strip()
    medium = client.post("/api/router_generator/Gpt2Medium_Text_Generator", json={"Prompt": "### Prompt: a story"})
    assert medium.json()["Status"] is True
    translated = client.post("/api/router_generator/Translate", json={"Text": "Hello friend", "Tgt_lang": "spa_Latn"})
    assert translated.json()["Status"] is True and translated.json()["Response"].strip()
    wrong = client.post("/api/router_generator/Translate", json={"Text": "Hello", "Tgt_lang": "klingon"})
    assert wrong.json()["Status"] is False
    assert client.post("/api/router_generator/Nope", json={}).status_code == 404
    assert client.post("/api/router_generator/Grok_Text_Generator", json={"Prompt": "x"}).json()["Status"] is False
