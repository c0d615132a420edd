"""The S3 output store against a real S3-compatible server: moto's, started here on a loopback port.

A daemon with ``[storage] backend = "s3"`` writes the images it generates and a job's artefacts to
the bucket (under the prefix) and answers with presigned URLs that fetch them; the data dir keeps
the working copy. With the store unreachable, an image request and a job fail with
``storage_error`` (507) and nothing is lost locally."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import openai
import pytest

from tests.conftest import MOCK_CONFIG, Daemon, free_port, write_config

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

BUCKET = "loom-outputs"
PREFIX = "seed003/"
#: What boto3 reads in the daemon (never from Loom's config); moto takes any credentials.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "loom-test-key",
    "AWS_SECRET_ACCESS_KEY": "loom-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
}


def storage_config(endpoint: str, **extra: str) -> str:
    lines = [
        "[storage]",
        'backend = "s3"',
        f'bucket = "{BUCKET}"',
        f'prefix = "{PREFIX}"',
        f'endpoint_url = "{endpoint}"',
        'region = "us-east-1"',
        'addressing_style = "path"',
        'url_ttl = "60s"',
        *(f"{k} = {v}" for k, v in extra.items()),
    ]
    return MOCK_CONFIG + "\n" + "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def s3_endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def bucket(s3_endpoint):
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    s3.create_bucket(Bucket=BUCKET)
    return s3


@pytest.fixture(scope="module")
def daemon(s3_endpoint, bucket, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("s3")
    d = Daemon(write_config(tmp / "loom.toml", storage_config(s3_endpoint)), tmp / "data", env=AWS_ENV).start()
    yield d
    d.stop()


def keys(bucket_client) -> set[str]:
    pages = bucket_client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def test_generated_images_land_in_the_bucket_and_presigned_urls_fetch_them(daemon, s3_endpoint, bucket):
    client = openai.OpenAI(base_url=f"{daemon.url}/v1", api_key="none", max_retries=0)
    out = client.images.generate(model="mock-image", prompt="a lighthouse", size="64x64", n=2, response_format="url")
    assert len(out.data) == 2
    for image in out.data:
        url = image.url
        assert url.startswith(f"{s3_endpoint}/{BUCKET}/{PREFIX}images/"), url
        q = parse_qs(urlsplit(url).query)
        assert q["X-Amz-Expires"] == ["60"]  # url_ttl = "60s", as seed 003's URLs
        key = urlsplit(url).path.removeprefix(f"/{BUCKET}/")
        rel = key.removeprefix(PREFIX)
        local = Path(daemon.data_dir) / rel
        assert local.is_file()  # the data dir keeps the working copy
        fetched = httpx.get(url)  # no key, no AWS credentials: the URL is the permission
        assert fetched.status_code == 200, fetched.text
        assert fetched.content == local.read_bytes() and fetched.content.startswith(b"\x89PNG")
        head = bucket.head_object(Bucket=BUCKET, Key=key)
        assert head["ContentType"] == "image/png"
    assert httpx.get(url.split("?")[0]).status_code == 403  # unsigned, the bucket is private


def test_a_jobs_outputs_land_in_the_bucket(daemon, s3_endpoint, bucket):
    job = httpx.post(
        f"{daemon.url}/v1/pipelines/persona",
        params={"wait": 60},
        json={"name": "Ada", "prompt": "a mathematician", "remember": False},
        timeout=90,
    ).json()
    assert job["state"] == "succeeded", job
    stored = keys(bucket)
    artifacts = {a["path"] for a in job["artifacts"] if a["name"] != "metadata.json"}
    assert {"persona.png", "motto.txt", "persona.json"} <= {a["name"] for a in job["artifacts"]}
    assert {PREFIX + rel for rel in artifacts} <= stored
    kept = job["result"]["image"]["path"]  # the persona's image, kept out of the job folder
    assert kept.startswith("images/personas/") and PREFIX + kept in stored
    for a in job["artifacts"]:
        if a["name"] == "metadata.json":
            continue
        assert a["url"].startswith(f"{s3_endpoint}/{BUCKET}/{PREFIX}output/"), a["url"]
        r = httpx.get(a["url"])
        assert r.status_code == 200 and r.content == (Path(daemon.data_dir) / a["path"]).read_bytes()
    # A stored result's /v1/files URLs become presigned URLs too, and the persona's image.
    assert job["result"]["image"]["url"].startswith(f"{s3_endpoint}/{BUCKET}/{PREFIX}images/personas/")
    persona = httpx.get(f"{daemon.url}/v1/personas/Ada").json()
    image = httpx.get(persona["image"]["url"])
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")


def test_the_job_folder_metadata_follows_when_the_job_ends(daemon, bucket):
    job = httpx.post(
        f"{daemon.url}/v1/pipelines/persona",
        params={"wait": 60},
        json={"name": "Ada", "prompt": "older now", "remember": False},
        timeout=90,
    ).json()
    key = f"{PREFIX}{job['output_dir']}/metadata.json"
    for _ in range(100):  # published in the background once the job has ended
        if key in keys(bucket):
            break
        time.sleep(0.05)
    meta = json.loads(bucket.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert meta["jobId"] == job["id"] and meta["state"] == "succeeded"


@pytest.fixture(scope="module")
def unreachable(tmp_path_factory):
    """A daemon whose store is a port nothing listens on: one attempt, a short timeout."""
    tmp = tmp_path_factory.mktemp("s3-down")
    port = free_port()
    config = storage_config(f"http://127.0.0.1:{port}", attempts="1", timeout='"2s"')
    d = Daemon(write_config(tmp / "loom.toml", config), tmp / "data", env=AWS_ENV).start()
    d.store_port = port
    yield d
    d.stop()


def test_an_unreachable_store_fails_an_image_request_with_storage_error(unreachable):
    r = httpx.post(
        f"{unreachable.url}/v1/images/generations",
        json={"model": "mock-image", "prompt": "x", "size": "64x64", "response_format": "url"},
        timeout=60,
    )
    assert r.status_code == 507, r.text
    error = r.json()["error"]
    assert error["code"] == "storage_error" and error["type"] == "server_error"
    kept = error["message"].rsplit(" at ", 1)[1]
    assert (Path(unreachable.data_dir) / kept).read_bytes().startswith(b"\x89PNG")  # nothing lost locally
    # b64_json answers are not published, so they are still served.
    r = httpx.post(
        f"{unreachable.url}/v1/images/generations", json={"model": "mock-image", "prompt": "x", "size": "64x64"}
    )
    assert r.status_code == 200 and r.json()["data"][0]["b64_json"]


def test_an_unreachable_store_fails_the_job_with_storage_error_and_keeps_its_files(unreachable):
    job = httpx.post(
        f"{unreachable.url}/v1/pipelines/persona",
        params={"wait": 60},
        json={"name": "Lin", "prompt": "a pilot", "remember": False},
        timeout=90,
    ).json()
    assert job["state"] == "failed", job
    assert job["error"]["code"] == "storage_error" and job["error"]["type"] == "server_error"
    folder = Path(unreachable.data_dir) / job["output_dir"]
    png = folder / "persona.png"
    assert png.read_bytes().startswith(b"\x89PNG")  # the working copy is whole
    assert any(a["path"].endswith("persona.png") for a in job["artifacts"])
    unreachable.failed_job = job


def test_resuming_once_the_store_is_back_publishes_what_the_failed_run_saved(unreachable):
    job = unreachable.failed_job
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=unreachable.store_port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{unreachable.store_port}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        )
        s3.create_bucket(Bucket=BUCKET)
        r = httpx.post(f"{unreachable.url}/v1/jobs/{job['id']}/resume")
        assert r.status_code == 202, r.text
        for _ in range(600):
            job = httpx.get(f"{unreachable.url}/v1/jobs/{job['id']}").json()
            if job["state"] in ("succeeded", "failed"):
                break
            time.sleep(0.05)
        assert job["state"] == "succeeded", job
        stored = keys(s3)
        # persona.png was saved by the failed run (its step is not run again), and published now.
        assert f"{PREFIX}{job['output_dir']}/persona.png" in stored
        assert PREFIX + job["result"]["image"]["path"] in stored
        assert httpx.get(job["result"]["image"]["url"]).status_code == 200
    finally:
        server.stop()
