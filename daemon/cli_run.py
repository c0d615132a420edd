"""``loom run PIPELINE``: start a pipeline on a running daemon, show its progress, print its result.

    loom run beam_search --prompt "a lighthouse at dusk" -p beam_width=4 -p ranking=pairwise

A client of the daemon over HTTP (``LoomClient.run``), like the TUI: ``--url`` / ``LOOM_URL`` and
``LOOM_API_KEY``. The progress bar is rich's; lineage and iteration events are printed above it.
A per-request upstream key is read from the environment (``--upstream-key
X-OpenAI-API-Key=OPENAI_API_KEY``), never from the command line, where other users could see it.
Exit status: 0 when the job succeeded, 1 when it failed or was cancelled, 2 for a bad command or
an unreachable daemon.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from loom.sdk.client import LoomClient, ServerEvent, describe_error
from loom.sdk.errors import LoomError

from .cli_address import daemon_address, key_hint

if TYPE_CHECKING:  # rich is imported when a progress bar is made
    from rich.progress import TaskID


def parse_params(args: argparse.Namespace) -> dict[str, Any]:
    """``--json`` (a file or '-'), then ``-p KEY=VALUE`` (VALUE read as JSON when it is JSON), then
    ``--prompt``."""
    params: dict[str, Any] = {}
    if args.json:
        text = sys.stdin.read() if args.json == "-" else Path(args.json).read_text()
        loaded = json.loads(text)
        if not isinstance(loaded, dict):
            raise ValueError("--json must hold a JSON object")
        params.update(loaded)
    for item in args.param or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"-p takes KEY=VALUE, got {item!r}")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    if args.prompt is not None:
        params["prompt"] = args.prompt
    return params


def upstream_keys(items: list[str] | None) -> dict[str, str]:
    keys = {}
    for item in items or []:
        header, sep, env = item.partition("=")
        if not sep:
            raise ValueError(f"--upstream-key takes HEADER=ENV_VARIABLE, got {item!r}")
        value = os.environ.get(env)
        if not value:
            raise ValueError(f"--upstream-key: the environment variable {env} is not set")
        keys[header] = value
    return keys


class ProgressView:
    """The job's progress as a rich progress bar; candidates and rankings as lines above it."""

    def __init__(self, quiet: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        # No path column: the event lines are the job's, not this file's.
        self.console = Console(stderr=True, log_path=False)
        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]{task.fields[job]}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=self.console,
            transient=False,
        )
        self.task: TaskID | None = None
        self.job_id: str | None = None
        self.failed_seen: set[str] = set()

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def on_event(self, event: ServerEvent) -> None:
        e = event.data if isinstance(event.data, dict) else {}
        kind, data = e.get("type"), e.get("data") or {}
        if self.task is None:
            self.job_id = e.get("job_id")
            self.task = self.progress.add_task("queued", total=100, job=self.job_id or "job")
        if kind == "progress":
            stage = data.get("stage", "")
            message = f" · {data['message']}" if data.get("message") else ""
            self.progress.update(self.task, completed=data.get("progress", 0), description=f"{stage}{message}")
        elif kind == "state":
            self.progress.update(self.task, description=data.get("state", ""))
        elif kind == "iteration" and not self.quiet:
            kept = ", ".join(data.get("kept", []))
            failed = f", {len(data['failed'])} failed" if data.get("failed") else ""
            judged = f", {data['comparisons']} comparisons" if data.get("comparisons") else ""
            self.console.log(f"iteration {data.get('iteration')}: kept {kept}{failed}{judged}")
        elif kind == "lineage" and data.get("status") == "failed" and data.get("id") not in self.failed_seen:
            self.failed_seen.add(data["id"])
            error = data.get("error") or {}
            self.console.log(f"[red]{data['id']} failed at {error.get('stage')}: {error.get('message')}")


def run_command(args: argparse.Namespace) -> int:
    try:
        params = parse_params(args)
        keys = upstream_keys(args.upstream_key)
    except (OSError, ValueError) as e:
        print(f"loom run: {e}", file=sys.stderr)
        return 2
    address = daemon_address(args.url, getattr(args, "config", None))
    client = LoomClient(url=address.url, timeout=60.0)
    view = ProgressView(args.quiet)
    try:
        with view:
            result = client.run(args.pipeline, params, on_event=view.on_event, upstream_keys=keys)
    except LoomError as e:
        job = e.job
        hint = key_hint(e.status_code)
        print(f"loom run: {e}" + (f" ({hint})" if hint else ""), file=sys.stderr)
        if job is not None and args.json_output:
            print(json.dumps(job, indent=2))
        return 1 if job is not None or e.status_code is None else 2
    except Exception as e:
        print(f"loom run: {address.unreachable(describe_error(e))}", file=sys.stderr)
        return 2
    finally:
        client.close()
    if args.json_output:
        print(json.dumps(result, indent=2))
    else:
        print(summary(result, client.url, view.job_id))
    return 0


def summary(result: Any, url: str, job_id: str | None = None) -> str:
    """A few lines for a person; ``--json-output`` prints everything."""
    if not isinstance(result, dict):
        return json.dumps(result, indent=2)
    lines = []
    winner = result.get("winner")
    if isinstance(winner, dict):
        score = winner.get("score")
        lines.append(
            f"winner {winner.get('id')}" + (f" (score {score:.2f})" if isinstance(score, (int, float)) else "")
        )
        if winner.get("combined"):
            lines.append(f"  prompt: {winner['combined']}")
        if winner.get("image_url"):
            lines.append(f"  image:  {url}{winner['image_url']}")
    if result.get("failed"):
        lines.append(f"{result['failed']} candidate(s) failed")
    if isinstance(result.get("comparisons"), dict):
        lines.append(f"{result['comparisons']['total']} pairwise comparisons")
    if result.get("output_dir"):
        # The folder itself is no file: its index (JSON, every file's URL) and the job's page.
        lines.append(f"output: {url}/v1/files/{result['output_dir']}/ (an index of its files)")
    if job_id:
        lines.append(f"job:    {url}/ui/jobs/{job_id}")
    return "\n".join(lines) or json.dumps(result, indent=2)


def add_subcommand(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a pipeline on the daemon and show its progress")
    run.add_argument("pipeline", help="e.g. beam_search (GET /v1/pipelines lists them)")
    run.add_argument("--prompt", help="the pipeline's prompt parameter")
    run.add_argument("-p", "--param", action="append", metavar="KEY=VALUE", help="a parameter (VALUE may be JSON)")
    run.add_argument("--json", metavar="FILE", help="parameters as a JSON object from FILE ('-': stdin)")
    run.add_argument(
        "--upstream-key",
        action="append",
        metavar="HEADER=ENV",
        help="send the key in environment variable ENV as HEADER (e.g. X-OpenAI-API-Key=OPENAI_API_KEY)",
    )
    run.add_argument("--url", help="daemon URL (default: $LOOM_URL, else the config's [daemon] host and port)")
    run.add_argument("--config", help="config whose [daemon] address to use (default: $LOOM_CONFIG or the user config)")
    run.add_argument("--json-output", action="store_true", help="print the whole result as JSON")
    run.add_argument("-q", "--quiet", action="store_true", help="only the progress bar, no event lines")
    run.set_defaults(func=run_command)
