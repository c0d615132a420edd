"""Issue 29, through the interfaces where each rough edge was met: the ``loom`` command in a
subprocess, HTTP with the ``openai`` package, and the daemon's own log."""

from __future__ import annotations

import re
import time

import httpx
import openai
import pytest

from tests.conftest import MOCK_CONFIG, Daemon, openai_client, write_config
from tests.integration.cli_support import loom, sandbox


def test_bare_loom_prints_the_help_and_version_is_known(tmp_path):
    env = sandbox(tmp_path)
    bare = loom(env=env)
    assert bare.returncode == 0 and "usage: loom" in bare.stdout and "serve" in bare.stdout
    version = loom("--version", env=env)
    assert version.returncode == 0 and re.fullmatch(r"loom \S+\n", version.stdout)


def test_looking_at_models_writes_no_config(tmp_path):
    env = sandbox(tmp_path)
    listed = loom("models", "ls", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "smollm2-135m" in listed.stdout  # the shipped default is listed
    assert "none yet" in listed.stdout
    assert not (tmp_path / "config" / "loom").exists()


def test_every_command_finds_the_daemon_by_the_configs_port(tmp_path):
    """No --url, no LOOM_URL: `loom models ls`, `loom run` all use the config's [daemon] port."""
    config = write_config(tmp_path / "loom.toml", MOCK_CONFIG)
    daemon = Daemon(config, tmp_path / "data").start()
    try:
        text = config.read_text().replace('host = "127.0.0.1"', f'host = "127.0.0.1"\nport = {daemon.port}', 1)
        cli_config = write_config(tmp_path / "cli.toml", text)
        env = sandbox(tmp_path, url="", LOOM_CONFIG=str(cli_config))
        listed = loom("models", "ls", env=env)
        assert f"daemon at {daemon.url}" in listed.stdout, listed.stdout + listed.stderr
        ran = loom(
            "run",
            "translate",
            "-p",
            "text=hello",
            "-p",
            "source=eng_Latn",
            "-p",
            "target=fra_Latn",
            "-p",
            "model=mock-translate",
            "-q",
            env=env,
        )
        assert ran.returncode == 0, ran.stderr
        assert f"{daemon.url}/ui/jobs/" in ran.stdout  # the job's page, a link that exists
    finally:
        daemon.stop()
    gone = loom("run", "translate", "-p", "text=hi", env=env)
    assert gone.returncode == 2
    assert f"no daemon answered at http://127.0.0.1:{daemon.port}" in gone.stderr
    assert "cli.toml" in gone.stderr and "--url or LOOM_URL" in gone.stderr
    assert "cli_run.py" not in gone.stderr


def test_a_misspelt_model_or_parameter_names_the_right_one(mock_daemon):
    client = openai_client(mock_daemon)
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="Mock-Chat", messages=[{"role": "user", "content": "hi"}])
    assert "did you mean 'mock-chat'?" in e.value.body["message"]
    r = httpx.post(
        f"{mock_daemon.url}/v1/pipelines/translate", json={"text": "hi", "source": "eng_Latn", "targt": "fra_Latn"}
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "targt" and "did you mean 'target'?" in error["message"]
    assert "Unknown parameter" in error["message"]


def test_a_missing_required_field_names_its_path(mock_daemon):
    r = httpx.post(f"{mock_daemon.url}/v1/chat/completions", json={"model": "mock-chat"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = httpx.post(
        f"{mock_daemon.url}/v1/chat/completions", json={"model": "mock-chat", "messages": [{"content": "x"}]}
    )
    assert r.status_code == 400 and r.json()["error"]["param"] is not None


def test_config_mistakes_are_explained(tmp_path):
    env = sandbox(tmp_path)
    bad = write_config(tmp_path / "bad.toml", "[daemon]\nprot = 1\n")
    r = loom("serve", "--config", str(bad), env=env, timeout=60)
    assert r.returncode == 2 and "did you mean 'port'?" in r.stderr
    r = loom("serve", "--config", str(tmp_path / "missing.toml"), env=env, timeout=60)
    assert r.returncode == 2 and "the user config is" in r.stderr


def test_the_log_says_what_an_operator_wants(tmp_path):
    config = write_config(tmp_path / "loom.toml", MOCK_CONFIG)
    daemon = Daemon(config, tmp_path / "data").start()
    try:
        client = openai_client(daemon)
        client.chat.completions.create(model="mock-chat", messages=[{"role": "user", "content": "hi"}])
        job = httpx.post(
            f"{daemon.url}/v1/pipelines/translate?wait=30",
            json={"text": "hello", "source": "eng_Latn", "target": "fra_Latn", "model": "mock-translate"},
        ).json()
        assert job["state"] == "succeeded"
        time.sleep(0.5)
    finally:
        daemon.stop()
    log = daemon.log.read_text()
    assert f"serving http://127.0.0.1:{daemon.port}" in log
    assert f"config: {config}" in log and "data dir:" in log
    assert "model mock-chat: mock [chat,completion,embedding]" in log
    assert re.search(r'"POST /v1/chat/completions" 200 model=mock-chat [0-9.]+ ms', log), log
    assert re.search(r"loaded mock-chat on \S+ in [0-9.]+ s", log), log
    assert re.search(rf"job {job['id']} \(translate\) started", log)
    assert re.search(rf"job {job['id']} \(translate\) succeeded after [0-9.]+ s", log)
    assert "Adding job tentatively" not in log


def test_plugin_tracing_names_each_plugin(tmp_path):
    env = sandbox(tmp_path, LOOM_TRACE_PLUGINS="1")
    r = loom("openapi", env=env)
    assert r.returncode == 0, r.stderr
    assert "<register for plugin 'mock'>" in r.stderr
    assert "plugin 'mock' registered MockProvider 'mock'" in r.stderr
    assert "<locals>" not in r.stderr


def test_describe_takes_a_relative_files_url(mock_daemon):
    image = httpx.post(
        f"{mock_daemon.url}/v1/images/generations",
        json={"model": "mock-image", "prompt": "a red fox", "size": "64x64", "response_format": "url"},
    ).json()["data"][0]["url"]
    relative = "/v1/files/" + image.split("/v1/files/", 1)[1]
    r = httpx.post(f"{mock_daemon.url}/v1/vision/describe", json={"model": "mock-vision", "image": relative})
    assert r.status_code == 200, r.text
    assert r.json()["description"]


def test_answers_name_the_model_that_served_not_the_alias(mock_daemon):
    reply = openai_client(mock_daemon).chat.completions.create(
        model="mock-alias", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.model == "mock-chat"


def test_the_lineage_labels_its_ranks_and_has_a_grid(tmp_path):
    from tests.integration.jobs_support import beam_config, small, start, wait

    daemon = Daemon(write_config(tmp_path / "loom.toml", beam_config()), tmp_path / "data").start()
    try:
        with httpx.Client(base_url=daemon.url, timeout=30) as client:
            job = start(client, small(beam_width=4, keep_top=2, iterations=2))
            done = wait(client, job["id"])
            assert done["state"] == "succeeded", done["error"]
            nodes = client.get(f"/v1/jobs/{job['id']}/lineage").json()["nodes"]
            assert all(n["ranked_in"] is not None for n in nodes if n["rank"] is not None)
            tree = client.get(f"/ui/jobs/{job['id']}/lineage").text
            assert re.search(r"#\d in iteration [01]&#39;s ranking|#\d in iteration [01]'s ranking", tree)
            assert "of all</span>" in tree and "overall <" not in tree
            grid = client.get(f"/ui/jobs/{job['id']}/lineage?layout=grid").text
            assert 'class="lineage-grid"' in grid and grid.count('<li class="cell') == len(nodes)
            assert client.get(f"/ui/jobs/{job['id']}/lineage?layout=huge").status_code == 400
            page = client.get(f"/ui/jobs/{job['id']}").text
            took = re.findall(r"<td>([0-9.]+ (?:ms|s|min)|running)</td></tr>", page)
            assert took and any(t != "0 ms" for t in took), took
            stages = client.get(f"/v1/jobs/{job['id']}/events").text
            assert "1 of 4" in stages  # iteration 0's bar moves with each candidate
    finally:
        daemon.stop()


def test_a_jobs_output_folder_answers_its_index(mock_daemon):
    job = httpx.post(
        f"{mock_daemon.url}/v1/pipelines/translate?wait=30",
        json={"text": "hello", "source": "eng_Latn", "target": "fra_Latn", "model": "mock-translate"},
    ).json()
    assert job["state"] == "succeeded"
    index = httpx.get(f"{mock_daemon.url}{job['output_url']}")
    assert index.status_code == 200, index.text
    files = index.json()["data"]
    assert any(f["path"].endswith("metadata.json") for f in files)
    first = httpx.get(mock_daemon.url + files[0]["url"])
    assert first.status_code == 200 and len(first.content) == files[0]["bytes"]
    assert httpx.get(f"{mock_daemon.url}/v1/files/output/no-such-folder/").status_code == 404
    assert httpx.get(f"{mock_daemon.url}/v1/files/../").status_code == 404
