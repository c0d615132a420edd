"""``loom jobs prune``: remove old finished jobs on request.

    loom jobs prune --older-than 30d --dry-run     # what would go
    loom jobs prune --older-than 30d               # remove them (outputs too; retrieval entries kept)

A running daemon does it (``POST /admin/jobs/prune``; an admin key from ``LOOM_API_KEY``), found at
``--url``, ``LOOM_URL`` or the config's host and port. With no daemon answering, the job store in
the config's data dir is pruned directly. Retrieval entries are kept unless ``--rag delete`` (or
``[jobs] rag = "delete"``) says otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any

from loom.sdk.errors import ConfigError, LoomError, PluginError

from . import cli_models


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    jobs = sub.add_parser("jobs", help="manage finished jobs (prune)")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    prune = jobs_sub.add_parser("prune", help="remove finished jobs older than a duration, with their outputs")
    prune.add_argument("--older-than", required=True, help="a duration: 30d, 12h, 90m")
    prune.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    prune.add_argument(
        "--rag", choices=["keep", "delete"], help="the removed jobs' retrieval entries (default: [jobs] rag, keep)"
    )
    prune.add_argument("--json", action="store_true", help="print the answer as JSON")
    prune.add_argument("--config", help="config file (default: $LOOM_CONFIG, else the user config)")
    prune.add_argument("--url", help="daemon URL (default: $LOOM_URL, else the config's host and port)")
    prune.add_argument("--data-dir", help="with no daemon running: the data dir (default: the config's)")
    prune.set_defaults(func=prune_command)


def prune_command(args: argparse.Namespace) -> int:
    try:
        path = cli_models._config(args)
        client = cli_models._client(args, path)
        body: dict[str, Any] = {"older_than": args.older_than, "dry_run": args.dry_run}
        if args.rag:
            body["rag"] = args.rag
        if client is not None:
            with client:
                answer = client.prune_jobs(args.older_than, dry_run=args.dry_run, rag=args.rag)
        else:
            answer = _offline(path, body, args.data_dir)
    except (ConfigError, PluginError) as e:
        return cli_models._fail(str(e))
    except LoomError as e:
        return cli_models._fail(cli_models._admin_hint(e))
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    verb = "would remove" if answer["dry_run"] else "removed"
    rows = [["JOB", "PIPELINE", "STATE", "FINISHED", "OUTPUT"]]
    for job in answer["data"]:
        when = datetime.datetime.fromtimestamp(job["finished_at"] or 0).strftime("%Y-%m-%d %H:%M")
        rows.append([job["id"], job["pipeline"], job["state"], when, job["output_dir"] or "-"])
    if len(rows) > 1:
        print(cli_models.format_table(rows))
    entries = "kept" if answer["rag"] == "keep" else "removed with them"
    print(f"{verb} {answer['count']} job(s) finished more than {args.older_than} ago; retrieval entries {entries}")
    return 0


def _offline(path, body: dict[str, Any], data_dir: str | None) -> dict[str, Any]:
    """Prune the store of the config's data dir directly (no daemon is running)."""
    from .config import load_config
    from .jobs.retention import parse_older_than, prune
    from .jobs.store import JobStore
    from .rag import RagStore
    from .services import JOBS_DB, RAG_DIR

    config = load_config(path, data_dir=data_dir)
    older_than = parse_older_than(body["older_than"])
    mode = body.get("rag") or config.jobs.rag
    root = config.data_dir
    store = JobStore(root / JOBS_DB, config.jobs.durability)
    rag = RagStore(root / RAG_DIR, durability=config.jobs.durability) if mode == "delete" else None
    try:
        removed = prune(store, root, older_than, rag=rag, dry_run=body["dry_run"])
    finally:
        store.close()
        if rag is not None:
            rag.close()
    return {
        "object": "jobs.prune",
        "dry_run": body["dry_run"],
        "older_than_s": older_than,
        "rag": mode,
        "count": len(removed),
        "data": removed,
    }
