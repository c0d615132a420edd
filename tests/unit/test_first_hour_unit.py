"""Issue 29's rough edges that need no daemon: nearest names, config messages, the CLI's one rule
for finding the daemon, stage durations, the kit's server and the provider-bug log line."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import msgspec
import pytest
from loom.daemon.cli_address import daemon_address, key_hint
from loom.daemon.config import decode_config
from loom.daemon.scheduler.dispatch import log_provider_bug
from loom.daemon.ui.jobs import stages_of
from loom.daemon.workers.wire import RemoteError, error_info
from loom.sdk import ChatCompletionRequest, UserMessage
from loom.sdk.errors import ConfigError
from loom.sdk.suggest import close_to, did_you_mean
from loom.sdk.testing.server import LoomServer

IDS = ["smollm2-135m", "mock-image", "mock-vision", "default"]


@pytest.mark.parametrize(
    ("typed", "nearest"),
    [("smollm2", "smollm2-135m"), ("SmolLM2-135M", "smollm2-135m"), ("beamwidth", "beam_width"), ("prot", "port")],
)
def test_the_nearest_name_is_suggested(typed, nearest):
    assert close_to(typed, [*IDS, "beam_width", "iterations", "port", "host"])[0] == nearest


def test_nothing_close_suggests_nothing():
    assert did_you_mean("gpt-4", IDS) == ""


def test_config_errors_suggest_keys_and_name_models_by_id():
    with pytest.raises(ConfigError, match=r"unknown field `prot`; did you mean 'port'\? - at `\$\.daemon`"):
        decode_config({"daemon": {"prot": 8080}}, "x.toml")
    with pytest.raises(
        ConfigError,
        match=r"`keepalive`; did you mean 'keep_alive'\? - at `\$\.models\[0\]` \(the \[\[models\]\] entry with id = 'a'\)",
    ):
        decode_config({"models": [{"id": "a", "provider": "mock", "keepalive": "5m"}]}, "x.toml")


def test_a_bad_port_in_the_file_is_an_error_even_with_port_given(tmp_path):
    from loom.daemon.config import load_config

    path = tmp_path / "loom.toml"
    path.write_text('[daemon]\nport = "eighteen"\n')
    with pytest.raises(ConfigError, match=r"Expected `int`, got `str` - at `\$\.daemon\.port`"):
        load_config(path, port=8080)


def test_a_missing_config_says_where_the_user_config_is(tmp_path, monkeypatch):
    from loom.daemon.config import load_config

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.toml \(the user config is .*cfg/loom"):
        load_config(tmp_path / "nope.toml")


def test_one_rule_finds_the_daemon(tmp_path, monkeypatch):
    monkeypatch.delenv("LOOM_URL", raising=False)
    monkeypatch.delenv("LOOM_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    config = tmp_path / "loom.toml"
    config.write_text('[daemon]\nhost = "0.0.0.0"\nport = 18000\n')
    assert daemon_address("http://h:1/", config).url == "http://h:1"
    assert daemon_address(None, config).url == "http://127.0.0.1:18000"
    assert "loom.toml" in daemon_address(None, config).source
    monkeypatch.setenv("LOOM_URL", "http://env:2")
    assert daemon_address(None, config).url == "http://env:2"
    monkeypatch.delenv("LOOM_URL")
    # No user config yet: the shipped default's address, and nothing is written.
    assert daemon_address().url == "http://127.0.0.1:11435"
    assert not (tmp_path / "cfg").exists()
    message = daemon_address(None, config).unreachable("connection refused")
    assert "http://127.0.0.1:18000" in message and "--url or LOOM_URL" in message


def test_key_hints_say_whether_a_key_was_given(monkeypatch):
    monkeypatch.delenv("LOOM_API_KEY", raising=False)
    assert key_hint(401) == "the daemon wants a key: set LOOM_API_KEY"
    monkeypatch.setenv("LOOM_API_KEY", "user-key")
    assert "refused LOOM_API_KEY" in key_hint(403, admin=True)
    assert "set LOOM_API_KEY" not in key_hint(401)
    assert key_hint(404) == ""


class _Events:
    def __init__(self, times):
        self.times = times

    def events_after(self, job_id, after):
        return [
            SimpleNamespace(type="progress", created_at=t, data={"stage": s, "progress": p}) for t, s, p in self.times
        ]


def test_a_stage_lasts_until_the_next_one_starts():
    runner = SimpleNamespace(store=_Events([(100.0, "expand", 0), (110.0, "image", 30), (130.0, "score", 60)]))
    stages = stages_of(runner, "j", finished_at=172.0)
    assert [s["took"] for s in stages] == [10.0, 20.0, 42.0]
    assert stages_of(runner, "j")[-1]["took"] is None  # still running


def test_last_user_text_skips_tool_results():
    request = msgspec.convert(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "weather in Paris?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            ],
        },
        ChatCompletionRequest,
    )
    assert request.last_user_text() == "weather in Paris?"
    assert isinstance(request.messages[0], UserMessage)


def test_loom_server_takes_its_port_as_an_argument(tmp_path):
    server = LoomServer("", tmp_path, port=18123)
    assert server.url == "http://127.0.0.1:18123"
    with pytest.raises(ValueError, match="port="):
        LoomServer("", tmp_path, args=["--port", "9"])


def test_a_provider_bug_is_logged_with_its_traceback(caplog):
    def buggy():
        return {}["missing"]

    try:
        buggy()
    except KeyError as e:
        local = e
    with caplog.at_level(logging.ERROR, logger="loom.scheduler"):
        log_provider_bug("m", local)
        log_provider_bug("m", RemoteError(error_info(local)))
    assert len(caplog.records) == 2
    assert caplog.records[0].exc_info is not None
    assert "in buggy" in caplog.records[1].getMessage()  # the worker's traceback, in the line


def test_streamed_tokens_count_as_they_come_and_end_exact():
    from loom.daemon.scheduler.metrics import SchedulerMetrics
    from loom.sdk import TextChunk

    metrics = SchedulerMetrics({}, nodes=lambda: [])
    count = metrics.stream_counter("m")

    def total() -> float:
        return metrics.tokens.labels("m")._value.get()

    count(TextChunk(text="a"))
    count(TextChunk(text="b"))
    assert total() == 2  # seen while the stream runs
    count(TextChunk(finish_reason="stop", prompt_tokens=3, completion_tokens=5))
    assert total() == 5  # exact at its end
