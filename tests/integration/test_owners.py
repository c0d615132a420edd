"""Owners: two user principals and an admin against a live daemon.

Everything a principal makes (jobs with their files, events and lineage; stored responses;
evaluations; personas; retrieval items; generated images) is its own: the other user gets a
404 on every route with an id in the path (the routes are read from the OpenAPI document, so a
new one cannot slip through), and its lists hold none of it; the admin sees everything. A
daemon's data from before keys (or owners) were configured is the admin's.
"""

from __future__ import annotations

import json
import re
import time

import httpx
import openai
import pytest

from tests.conftest import Daemon, openai_client, write_config

ALICE, BOB, ADMIN = "owners-alice-key", "owners-bob-key", "owners-admin-key"
ALL = '["chat", "completion", "embedding", "image", "vision", "translation"]'
MODELS = f"""
[routes]
chat = "x-ok"
image = "x-ok"
vision = "x-ok"
embedding = "x-ok"

[[models]]
id = "x-ok"
provider = "mock"
capabilities = {ALL}
"""
CONFIG = (
    """
[daemon]
host = "127.0.0.1"

[[daemon.api_keys]]
key = { env = "T_OWN_ALICE" }
principal = "alice"

[[daemon.api_keys]]
key = { env = "T_OWN_BOB" }
name = "bob"

[[daemon.api_keys]]
key = { env = "T_OWN_ADMIN" }
role = "admin"
"""
    + MODELS
)
ENV = {"T_OWN_ALICE": ALICE, "T_OWN_BOB": BOB, "T_OWN_ADMIN": ADMIN}

#: Routes with an id in the path whose id names nothing a principal owns, each with the reason.
NOT_OWNED = {
    "/v1/models/{model_id}": "models are the daemon's, shared by everyone",
    "/v1/pipelines/{name}": "a pipeline's name: starting one makes a job of the caller's own",
}
#: Admin-only route prefixes: a user key gets 403 whatever the id (an admin sees all anyway).
ADMIN_ONLY = ("/admin/", "/api/pull", "/api/delete", "/api/copy", "/api/create", "/api/push")


def client(daemon: Daemon, key: str) -> httpx.Client:
    return httpx.Client(base_url=daemon.url, timeout=60, headers={"Authorization": f"Bearer {key}"})


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("owners")
    d = Daemon(write_config(tmp / "loom.toml", CONFIG), tmp / "data", env=ENV).start()
    yield d
    d.stop()


def wait_job(c: httpx.Client, job_id: str) -> dict:
    for _ in range(1200):
        job = c.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled", "interrupted"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def unsigned(url: str) -> str:
    return url.split("/v1/files/", 1)[1].split("?")[0]


def make_things(daemon: Daemon, key: str, persona: str) -> dict[str, str]:
    """One of each owned thing, made with ``key``; their ids by the path parameter names."""
    c = client(daemon, key)
    ids: dict[str, str] = {}
    ids["response_id"] = openai_client(daemon, key=key).responses.create(model="x-ok", input="hi").id
    image = c.post("/v1/images/generations", json={"model": "x-ok", "prompt": "x", "response_format": "url"})
    ids["image_url"] = image.json()["data"][0]["url"]
    ids["image"] = unsigned(ids["image_url"])
    job = c.post("/v1/pipelines/persona", json={"name": persona, "prompt": "a mathematician"}).json()
    done = wait_job(c, job["id"])
    assert done["state"] == "succeeded", done
    ids["job_id"] = job["id"]
    ids["persona"] = persona
    ids["output_dir"] = done["output_dir"]
    ids["output_file"] = next(a["path"] for a in done["artifacts"] if a["media_type"].startswith("image/"))
    side = {"job_id": job["id"]}
    evaluation = c.post("/v1/evaluations", json={"a": side, "b": side, "choice": "tie"})
    assert evaluation.status_code == 201, evaluation.text
    ids["evaluation"] = evaluation.json()["id"]
    item = c.post("/v1/rag/items", json={"text": f"a story of {persona}", "model": "x-ok", "collection": "stories"})
    ids["item_id"] = str(item.json()["data"][0]["id"])
    ids["path"] = ids["output_file"]
    line = {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "x-ok", "messages": []},
    }
    line["body"]["messages"] = [{"role": "user", "content": f"hello from {persona}"}]
    oc = openai_client(daemon, key=key)
    upload = oc.files.create(file=("in.jsonl", (json.dumps(line) + "\n").encode()), purpose="batch")
    ids["file_id"] = upload.id
    batch = oc.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    ids["batch_id"] = batch.id
    return ids


@pytest.fixture(scope="module")
def made(team):
    return {"alice": make_things(team, ALICE, "Ada"), "bob": make_things(team, BOB, "Grace")}


def test_every_route_with_an_id_is_a_404_for_another_user(team, made):
    """From the OpenAPI document: each route whose path names an id, asked by bob about alice's
    things, answers 404 (not 403, which would say the id exists); alice herself gets no 404."""
    doc = httpx.get(f"{team.url}/docs/openapi.json").json()
    alice, bob = client(team, ALICE), client(team, BOB)
    checked = []
    for path, item in doc["paths"].items():
        params = re.findall(r"\{(\w+)\}", path)
        if not params or path in NOT_OWNED or path.startswith(ADMIN_ONLY):
            continue
        unknown = [p for p in params if p not in made["alice"]]
        assert not unknown, (
            f"{path}: a new route with an id ({unknown}); make what it names owned (principals.py) and "
            "add it to make_things, or to NOT_OWNED with the reason"
        )
        url = re.sub(r"\{(\w+)\}", lambda m: made["alice"][m.group(1)], path)
        for method in item:
            if method not in ("get", "post", "delete", "put", "patch"):
                continue
            r = bob.request(method.upper(), url)
            assert r.status_code == 404, f"bob {method.upper()} {url}: {r.status_code} {r.text[:200]}"
            checked.append((method, path))
            if method == "get":
                mine = alice.get(url)
                assert mine.status_code == 200, f"alice GET {url}: {mine.status_code} {mine.text[:200]}"
    # The routes the issue names are among those checked.
    for route in (
        ("get", "/v1/jobs/{job_id}"),
        ("post", "/v1/jobs/{job_id}/cancel"),
        ("post", "/v1/jobs/{job_id}/resume"),
        ("get", "/v1/jobs/{job_id}/lineage"),
        ("get", "/v1/jobs/{job_id}/events"),
        ("get", "/v1/responses/{response_id}"),
        ("delete", "/v1/responses/{response_id}"),
        ("get", "/v1/responses/{response_id}/input_items"),
        ("get", "/v1/files/{path}"),
        ("get", "/v1/personas/{persona}"),
        ("delete", "/v1/rag/items/{item_id}"),
        ("get", "/v1/batches/{batch_id}"),
        ("post", "/v1/batches/{batch_id}/cancel"),
    ):
        assert route in checked, route
    # Nothing bob tried removed alice's things.
    assert alice.get(f"/v1/responses/{made['alice']['response_id']}").status_code == 200
    hits = alice.post("/v1/rag/search", json={"text": "a story of Ada", "model": "x-ok", "collection": "stories"})
    assert made["alice"]["item_id"] in {str(h["id"]) for h in hits.json()["data"]}


def test_a_cancel_of_another_users_job_is_a_404_not_a_409(team, made):
    job = made["alice"]["job_id"]
    assert client(team, ALICE).post(f"/v1/jobs/{job}/cancel").status_code == 409  # hers: already finished
    theirs = client(team, BOB).post(f"/v1/jobs/{job}/cancel")
    none = client(team, BOB).post("/v1/jobs/000000000000/cancel")
    assert theirs.status_code == none.status_code == 404
    # The same answer as for an id nobody has: nothing says the job exists.
    assert theirs.json()["error"] == {**none.json()["error"], "message": f"No job with id '{job}'"}


def test_lists_hold_only_the_callers_own_and_everything_for_the_admin(team, made):
    a, b = made["alice"], made["bob"]
    for key, mine, theirs in ((ALICE, a, b), (BOB, b, a)):
        c = client(team, key)
        jobs = {j["id"] for j in c.get("/v1/jobs").json()["data"]}
        assert mine["job_id"] in jobs and theirs["job_id"] not in jobs
        artifacts = {x["job_id"] for x in c.get("/v1/artifacts").json()["data"]}
        assert artifacts == {mine["job_id"]}
        evaluations = {e["id"] for e in c.get("/v1/evaluations").json()["data"]}
        assert evaluations == {mine["evaluation"]}
        exported = c.get("/v1/evaluations/export").text
        assert mine["evaluation"] in exported and theirs["evaluation"] not in exported
        personas = {p["name"] for p in c.get("/v1/personas").json()["data"]}
        assert personas == {mine["persona"]}
        hits = c.post("/v1/rag/search", json={"text": "a story", "model": "x-ok", "collection": "stories", "k": 10})
        assert {str(h["id"]) for h in hits.json()["data"]} == {mine["item_id"]}
    admin = client(team, ADMIN)
    jobs = {j["id"] for j in admin.get("/v1/jobs").json()["data"]}
    assert {a["job_id"], b["job_id"]} <= jobs
    assert {p["name"] for p in admin.get("/v1/personas").json()["data"]} >= {"Ada", "Grace"}
    assert {e["id"] for e in admin.get("/v1/evaluations").json()["data"]} >= {a["evaluation"], b["evaluation"]}
    for key in (ALICE, ADMIN):  # alice reads her own answer; the admin reads anyone's
        assert client(team, key).get(f"/v1/responses/{a['response_id']}").status_code == 200


def test_two_users_personas_of_one_name_are_two_records(team, made):
    c = client(team, BOB)
    job = c.post("/v1/pipelines/persona", json={"name": "Ada", "prompt": "a poet"}).json()
    assert wait_job(c, job["id"])["state"] == "succeeded"
    bobs = c.get("/v1/personas/Ada").json()
    alices = client(team, ALICE).get("/v1/personas/Ada").json()
    assert bobs["prompt"] == "a poet" and alices["prompt"] == "a mathematician"


def test_a_response_cannot_continue_another_users_conversation(team, made):
    with pytest.raises(openai.NotFoundError):
        openai_client(team, key=BOB).responses.create(
            model="x-ok", input="and then?", previous_response_id=made["alice"]["response_id"]
        )
    mine = openai_client(team, key=ALICE).responses.create(
        model="x-ok", input="and then?", previous_response_id=made["alice"]["response_id"]
    )
    assert mine.previous_response_id == made["alice"]["response_id"]


def test_files_are_their_makers_and_signed_urls_open_for_anyone(team, made):
    a = made["alice"]
    alice, bob, admin = client(team, ALICE), client(team, BOB), client(team, ADMIN)
    for path in (a["image"], a["output_file"], a["output_dir"] + "/"):
        assert alice.get(f"/v1/files/{path}").status_code == 200, path
        assert admin.get(f"/v1/files/{path}").status_code == 200, path
        assert bob.get(f"/v1/files/{path}").status_code == 404, path
    # A folder above the job's, or one made by no principal: the admin's only.
    day = a["output_dir"].rsplit("/", 1)[0]
    assert alice.get(f"/v1/files/{day}/").status_code == 404
    assert admin.get(f"/v1/files/{day}/").status_code == 200
    # ".." does not lead out of one's own folder into another's.
    sneaky = f"{made['bob']['output_dir']}/../{a['output_dir'].rsplit('/', 1)[1]}/"
    assert bob.get(f"/v1/files/{sneaky}").status_code == 404
    # A signed URL is a capability: whoever holds it reads the file, with or without a key.
    assert httpx.get(a["image_url"]).status_code == 200
    assert bob.get(a["image_url"]).status_code == 200


def test_events_of_another_users_job_stay_closed_over_the_websocket(team, made):
    import json

    import websockets.sync.client as ws_client

    url = team.url.replace("http://", "ws://") + "/v1/ws"
    job = made["alice"]["job_id"]
    with ws_client.connect(url, subprotocols=["loom", f"loom.bearer.{BOB}"]) as ws:
        ws.send(json.dumps({"op": "subscribe", "jobs": [job]}))
        said = json.loads(ws.recv(timeout=10))
        assert said == {"op": "error", "job_id": job, "message": f"No job with id '{job}'"}
    token = client(team, BOB).post("/v1/stream-tokens").json()["token"]  # a stream token acts for bob too
    r = httpx.get(f"{team.url}/v1/jobs/{job}/events", params={"token": token})
    assert r.status_code == 404


def test_the_web_ui_lists_the_callers_own_jobs(team, made):
    alice = client(team, ALICE).get("/ui/").text
    assert made["alice"]["job_id"] in alice and made["bob"]["job_id"] not in alice
    assert client(team, BOB).get(f"/ui/jobs/{made['alice']['job_id']}").status_code == 404
    admin = client(team, ADMIN).get("/ui/").text
    assert made["alice"]["job_id"] in admin and made["bob"]["job_id"] in admin


CSRF = re.compile(r'name="_csrf_token" value="([0-9a-f]+)"')


def ui_session(daemon: Daemon, key: str) -> tuple[httpx.Client, str]:
    """A client signed in through the UI's form (a session cookie, no key), and a CSRF token."""
    c = httpx.Client(base_url=daemon.url, timeout=60)
    token = CSRF.search(c.get("/ui/login").text).group(1)
    assert c.post("/ui/login", data={"key": key, "next": "/ui/", "_csrf_token": token}).status_code == 303
    return c, CSRF.search(c.get("/ui/pipelines/persona").text).group(1)


def test_a_job_started_from_the_web_ui_is_the_signed_in_principals(team):
    alice, token = ui_session(team, ALICE)
    bob, _ = ui_session(team, BOB)
    try:
        r = alice.post("/ui/pipelines/persona", data={"name": "Lin", "prompt": "a painter", "_csrf_token": token})
        assert r.status_code == 303, r.text
        job_id = r.headers["location"].rsplit("/", 1)[1]
        assert wait_job(client(team, ALICE), job_id)["state"] == "succeeded"
        assert client(team, BOB).get(f"/v1/jobs/{job_id}").status_code == 404
        assert alice.get(f"/ui/jobs/{job_id}").status_code == 200
        assert bob.get(f"/ui/jobs/{job_id}").status_code == 404
        assert job_id in alice.get("/ui/").text and job_id not in bob.get("/ui/").text
    finally:
        alice.close()
        bob.close()


def test_data_from_before_keys_is_the_admins(tmp_path):
    """A daemon run without keys, then with them: what was made before is the admin's."""
    data = tmp_path / "data"
    open_cfg = write_config(tmp_path / "open.toml", '[daemon]\nhost = "127.0.0.1"\n' + MODELS)
    d = Daemon(open_cfg, data).start()
    try:
        c = httpx.Client(base_url=d.url, timeout=60)
        job = c.post("/v1/pipelines/persona", json={"name": "Old", "prompt": "an heirloom"}).json()
        assert wait_job(c, job["id"])["state"] == "succeeded"
        response = c.post("/v1/responses", json={"model": "x-ok", "input": "hi"}).json()["id"]
    finally:
        d.stop()
    d = Daemon(write_config(tmp_path / "keyed.toml", CONFIG), data, env=ENV).start()
    try:
        alice, admin = client(d, ALICE), client(d, ADMIN)
        for path in (f"/v1/jobs/{job['id']}", f"/v1/responses/{response}", "/v1/personas/Old"):
            assert alice.get(path).status_code == 404, path
            assert admin.get(path).status_code == 200, path
        assert job["id"] not in {j["id"] for j in alice.get("/v1/jobs").json()["data"]}
    finally:
        d.stop()


def test_uploaded_files_and_batches_are_their_makers(team, made):
    """The Files API's ids share ``/v1/files/{path}`` with generated files: another user's upload
    (its object, its content, deleting it) is a 404 too, lists hold only one's own, and an admin
    sees everyone's."""
    alice, bob, admin = client(team, ALICE), client(team, BOB), client(team, ADMIN)
    file_id, batch_id = made["alice"]["file_id"], made["alice"]["batch_id"]
    for method, url in (
        ("GET", f"/v1/files/{file_id}"),
        ("GET", f"/v1/files/{file_id}/content"),
        ("DELETE", f"/v1/files/{file_id}"),
    ):
        assert bob.request(method, url).status_code == 404, url
    assert alice.get(f"/v1/files/{file_id}/content").status_code == 200
    assert file_id not in {f["id"] for f in bob.get("/v1/files").json()["data"]}
    assert batch_id not in {b["id"] for b in bob.get("/v1/batches").json()["data"]}
    assert {file_id, made["bob"]["file_id"]} <= {f["id"] for f in admin.get("/v1/files").json()["data"]}
    assert {batch_id, made["bob"]["batch_id"]} <= {b["id"] for b in admin.get("/v1/batches").json()["data"]}
    assert admin.get(f"/v1/batches/{batch_id}").status_code == 200


def test_an_image_named_by_url_is_read_only_as_the_files_route_would_serve_it(team, made):
    """A request that names an image by this daemon's URL (to describe it, to chat about it) reads
    it only where the files route would serve it to that caller: bob names alice's image by its
    bare path and gets the 404 a missing file gets; her signed URL is a capability and works;
    alice reads her own by the bare path."""
    alice, bob = client(team, ALICE), client(team, BOB)
    bare = "/v1/files/" + made["alice"]["image"]
    signed = made["alice"]["image_url"]

    def describe(c: httpx.Client, image: str) -> httpx.Response:
        return c.post("/v1/vision/describe", json={"model": "x-ok", "image": image})

    def chat(c: httpx.Client, image: str) -> httpx.Response:
        content = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": image}}]
        return c.post(
            "/v1/chat/completions", json={"model": "x-ok", "messages": [{"role": "user", "content": content}]}
        )

    theirs = describe(bob, bare)
    assert theirs.status_code == 404, theirs.text
    assert made["alice"]["image"] in theirs.json()["error"]["message"]
    assert chat(bob, team.url + bare).status_code == 404
    assert describe(bob, signed).status_code == 200  # a signed URL is a capability
    assert describe(alice, bare).status_code == 200
    assert chat(alice, team.url + bare).status_code == 200
