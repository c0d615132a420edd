"""OpenAI's Files API on a live daemon, through the ``openai`` package: upload, list (purpose,
order, paging), retrieve, content, delete, in OpenAI's shapes (``OpenAIFile``,
``ListFilesResponse``, ``DeleteFileResponse``); the size limit (413) and bad input (400 naming
the field); each key sees its own files only; and ``/v1/files/<path>`` still serves the images
and job outputs Loom makes, side by side with the file ids."""

from __future__ import annotations

import base64

import httpx
import openai
import pytest

from tests.conftest import MOCK_CONFIG, Daemon, openai_client, write_config
from tests.openai_schema import require_document, validate

LIMIT = 64 * 1024
KEYS = """
[[daemon.api_keys]]
key = { env = "T_ALICE" }

[[daemon.api_keys]]
key = { env = "T_BOB" }
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("files")
    config = MOCK_CONFIG.replace('[daemon]\nhost = "127.0.0.1"\n', '[daemon]\nhost = "127.0.0.1"\n' + KEYS)
    config += f"\n[files]\nmax_bytes = {LIMIT}\n"
    d = Daemon(write_config(tmp / "loom.toml", config), tmp / "data", env={"T_ALICE": "alice-1", "T_BOB": "bob-1"})
    d.start()
    yield d
    d.stop()


@pytest.fixture
def alice(daemon):
    with openai_client(daemon, "alice-1") as client:
        yield client


@pytest.fixture
def bob(daemon):
    with openai_client(daemon, "bob-1") as client:
        yield client


def test_upload_retrieve_content_list_delete(alice):
    require_document()
    data = b'{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}\n'
    f = alice.files.create(file=("requests.jsonl", data), purpose="batch")
    raw = f.model_dump(exclude_unset=True)
    validate(raw, "OpenAIFile")
    assert f.id.startswith("file-") and f.object == "file" and f.bytes == len(data)
    assert f.filename == "requests.jsonl" and f.purpose == "batch" and f.status == "processed"
    assert f.expires_at == f.created_at + 30 * 86400  # batch input files expire in 30 days, as OpenAI's

    got = alice.files.retrieve(f.id)
    assert got.model_dump() == f.model_dump()
    assert alice.files.content(f.id).content == data

    listed = alice.files.list(purpose="batch")
    validate(listed.model_dump(exclude_unset=True), "ListFilesResponse")
    assert f.id in [x.id for x in listed.data]

    deleted = alice.files.delete(f.id)
    validate(deleted.model_dump(), "DeleteFileResponse")
    assert deleted.deleted is True and deleted.id == f.id
    with pytest.raises(openai.NotFoundError) as e:
        alice.files.retrieve(f.id)
    assert e.value.body["param"] == "file_id"
    with pytest.raises(openai.NotFoundError):
        alice.files.content(f.id)


def test_list_pages_in_order_and_filters_by_purpose(alice):
    ids = [alice.files.create(file=(f"f{i}.txt", b"x" * (i + 1)), purpose="user_data").id for i in range(5)]
    vision = alice.files.create(file=("pic.png", b"\x89PNG"), purpose="vision")
    newest_first = [x.id for x in alice.files.list(purpose="user_data").data]
    assert newest_first[:5] == ids[::-1]
    assert vision.id not in newest_first
    oldest_first = [x.id for x in alice.files.list(purpose="user_data", order="asc").data]
    assert [i for i in oldest_first if i in ids] == ids
    # Paging: two at a time, by the cursor; the openai package follows has_more/after itself.
    page = alice.files.list(purpose="user_data", limit=2)
    assert len(page.data) == 2 and page.has_more is True
    assert [x.id for x in page][:5] == ids[::-1]


def test_expires_after_is_honoured(alice):
    f = alice.files.create(
        file=("notes.txt", b"hello"), purpose="user_data", expires_after={"anchor": "created_at", "seconds": 3600}
    )
    assert f.expires_at == f.created_at + 3600
    with pytest.raises(openai.BadRequestError) as e:
        alice.files.create(
            file=("n.txt", b"x"), purpose="user_data", expires_after={"anchor": "created_at", "seconds": 5}
        )
    assert "expires_after" in e.value.body["param"]


def test_a_file_over_the_limit_is_413_naming_the_limit(alice):
    with pytest.raises(openai.APIStatusError) as e:
        alice.files.create(file=("big.jsonl", b"x" * (LIMIT + 1)), purpose="batch")
    assert e.value.status_code == 413
    assert e.value.body["param"] == "file" and str(LIMIT) in e.value.body["message"]
    assert "max_bytes" in e.value.body["message"]


def test_bad_purpose_and_missing_file_are_400(daemon, alice):
    with pytest.raises(openai.BadRequestError) as e:
        alice.files.create(file=("a.txt", b"x"), purpose="homework")  # type: ignore[arg-type]
    assert e.value.body["param"] == "purpose"
    headers = {"Authorization": "Bearer alice-1"}
    r = httpx.post(f"{daemon.url}/v1/files", data={"purpose": "batch"}, files={"other": ("a", b"x")}, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["param"] == "other"
    r = httpx.post(f"{daemon.url}/v1/files", data={"purpose": "batch"}, headers=headers)
    assert r.status_code == 400


def test_each_key_sees_its_own_files(alice, bob):
    f = alice.files.create(file=("mine.txt", b"secret"), purpose="user_data")
    with pytest.raises(openai.NotFoundError):
        bob.files.retrieve(f.id)
    with pytest.raises(openai.NotFoundError):
        bob.files.content(f.id)
    with pytest.raises(openai.NotFoundError):
        bob.files.delete(f.id)
    assert f.id not in [x.id for x in bob.files.list()]
    assert alice.files.content(f.id).content == b"secret"


def test_generated_files_are_still_served_beside_file_ids(daemon, alice):
    """An image's signed URL and a key-authenticated path keep answering from the data dir."""
    img = alice.images.generate(model="mock-image", prompt="a red square", response_format="url", size="64x64")
    url = img.data[0].url
    r = httpx.get(url if url.startswith("http") else daemon.url + url)  # signed: no key needed
    assert r.status_code == 200 and r.content[:4] == b"\x89PNG"
    path = httpx.URL(url).path
    keyed = httpx.get(daemon.url + path, headers={"Authorization": "Bearer alice-1"})
    assert keyed.status_code == 200 and keyed.content == r.content
    b64 = alice.images.generate(model="mock-image", prompt="x", response_format="b64_json", size="64x64")
    assert base64.b64decode(b64.data[0].b64_json)[:4] == b"\x89PNG"
    # A path that is neither a file id nor a public folder is a 404, as before.
    r = httpx.get(f"{daemon.url}/v1/files/loom.db", headers={"Authorization": "Bearer alice-1"})
    assert r.status_code == 404
