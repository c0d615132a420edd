"""``loom models`` (ls, show, add, rm, scan, reload) and ``loom pull``.

A running daemon is the one that changes: ``add`` and ``rm`` go through ``/admin/models`` so it
serves (or drops) the model at once and writes its own config file. With no daemon answering,
they edit the config file (the user config, ``--config`` or ``LOOM_CONFIG``) directly, validated
as ``loom serve`` would, and the next start serves the change. The daemon is found at ``--url``,
``LOOM_URL``, or the host and port of the config; an admin key comes from ``LOOM_API_KEY``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from loom.sdk.errors import ConfigError, LoomError, PluginError

from . import config_file
from .cli_address import config_text, daemon_address, key_hint

# --- where the config and the daemon are ------------------------------------------------------


def _config(args: argparse.Namespace) -> Path:
    path, created = config_file.ensure_config(args.config)
    if created:
        print(f"loom: wrote the user config {path} (from Loom's default)", file=sys.stderr)
    return path


def _daemon_url(args: argparse.Namespace, path: Path | None = None) -> str:
    return daemon_address(args.url, args.config).url


def _client(args: argparse.Namespace, path: Path):
    """A client of the running daemon, or None when none answers."""
    import httpx
    from loom.sdk.client import LoomClient

    client = LoomClient(_daemon_url(args, path), timeout=600)
    try:
        client.http.get("/health", timeout=2)
    except httpx.TransportError:
        client.close()
        return None
    return client


def _fail(message: str) -> int:
    print(f"loom: {message}", file=sys.stderr)
    return 2


def _admin_hint(e: LoomError) -> str:
    hint = key_hint(e.status_code, admin=True)
    return f"{e} ({hint})" if hint else str(e)


# --- formatting -------------------------------------------------------------------------------


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    # Binary units, as the TUI, the web UI and the scheduler's budgets show memory.
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _state(record: dict[str, Any]) -> str:
    if "loaded" not in record:
        return "-"
    if record["loaded"]:
        footprint = f", {human_size(record['footprint'])}" if record.get("footprint") else ""
        return f"loaded ({record['device']}{footprint})" + (" pinned" if record.get("pinned") else "")
    return "idle" + (" pinned" if record.get("pinned") else "")


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def toml_entry(model: dict[str, Any]) -> str:
    """A ``[[models]]`` table as it goes in the config file."""
    return config_file.with_model("", model).strip()


# --- ls / show --------------------------------------------------------------------------------


def _records(args: argparse.Namespace) -> tuple[list[dict[str, Any]], Path | None, str | None, str]:
    """(model records, config path, the URL of the daemon they came from or None, a note).

    Looking writes nothing: with no user config yet, the shipped default is listed. The daemon's
    listing (with each model's state) needs an admin key; with a user key the config is listed
    and the note says why the state is missing."""
    from .config_file import config_path

    note = ""
    client = _client(args, config_path(args.config))
    if client is not None:
        with client:
            try:
                listing = client.configured_models()
            except LoomError as e:
                if e.status_code not in (401, 403):
                    raise
                note = f"state not shown: {key_hint(e.status_code, admin=True)}"
            else:
                return listing["data"], Path(listing["config"]) if listing["config"] else None, client.url, note
    from .catalog.edits import registry_offline
    from .catalog.listing import record

    text, path = config_text(args.config)
    if text is None:
        raise ConfigError(f"no config at {config_file.config_path(args.config)}")
    registry = registry_offline(text, str(path or "Loom's default config"))
    url = client.url if client is not None else None
    return [record(entry) for entry in registry], path, url, note


def ls_command(args: argparse.Namespace) -> int:
    try:
        records, path, url, note = _records(args)
    except (ConfigError, PluginError) as e:
        return _fail(str(e))
    except LoomError as e:
        return _fail(_admin_hint(e))
    if args.json:
        print(json.dumps({"config": str(path) if path else None, "daemon": url, "models": records}, indent=2))
        return 0
    rows = [["ID", "PROVIDER", "CAPABILITIES", "SIZE", "STATE", "FROM"]]
    for r in records:
        origin = r["location"] or r["declared_by"]
        rows.append(
            [r["id"], r["provider"], ",".join(r["capabilities"]), human_size(r["size"]), _state(r), str(origin)]
        )
    print(format_table(rows))
    address = daemon_address(args.url, args.config)
    running = f"daemon at {url}" if url else f"no daemon running at {address.url} (from {address.source})"
    where = path or "none yet: `loom serve` writes the user config from Loom's default (listed above)"
    print(f"\nconfig: {where}\n{running}" + (f"\n{note}" if note else ""))
    return 0


def show_command(args: argparse.Namespace) -> int:
    try:
        records, path, url, _note = _records(args)
    except (ConfigError, PluginError) as e:
        return _fail(str(e))
    except LoomError as e:
        return _fail(_admin_hint(e))
    record = next((r for r in records if args.id == r["id"] or args.id in r["aliases"]), None)
    if record is None:
        return _fail(f"no model named {args.id!r} in {path} (`loom models ls` lists them)")
    details = _details(record)
    if args.json:
        print(json.dumps({**record, "detected": details}, indent=2))
        return 0
    fields = [
        ("id", record["id"]),
        ("aliases", ", ".join(record["aliases"]) or "-"),
        ("provider", f"{record['provider']} (plugin {record['plugin']})"),
        ("capabilities", ", ".join(record["capabilities"])),
        ("declared by", record["declared_by"]),
        ("weights", record["location"] or "-"),
        ("path", record["path"] or "-"),
        ("size", human_size(record["size"])),
        ("state", _state(record) if url else "no daemon running"),
        ("keep_alive", str(record["keep_alive"])),
        ("description", record["description"] or "-"),
    ]
    if details:
        fields.append(("detected", details))
    width = max(len(k) for k, _ in fields)
    print("\n".join(f"{k.ljust(width)}  {v}" for k, v in fields))
    print(f"\noptions: {json.dumps(record['options'])}")
    return 0


def _details(record: dict[str, Any]) -> str | None:
    """What the files say now, for a model whose weights are on this machine."""
    if not record.get("path"):
        return None
    from .catalog.detect import detect_path

    try:
        found = detect_path(Path(record["path"]))
    except LoomError as e:
        return f"not recognised: {e}"
    return f"{found.summary()}; {found.provider}: {', '.join(found.capabilities)}"


# --- add / rm / reload ------------------------------------------------------------------------


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), tomllib.loads(f"v = {value}")["v"]  # 4096, true, "x", [1, 2]
    except tomllib.TOMLDecodeError:
        return key.strip(), value


def add_command(args: argparse.Namespace) -> int:
    from .catalog import hub
    from .catalog.edits import AddModel, add_offline

    fields = {
        "id": args.id,
        "file": args.file,
        "provider": args.provider,
        "capabilities": args.capability or None,
        "aliases": args.alias or None,
        "options": dict(args.option) if args.option else None,
        "description": args.description,
        "keep_alive": args.keep_alive,
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    try:
        path = _config(args)
        if args.pull and hub.is_hub_id(args.source) and not Path(args.source).exists():
            _pull(args.source, args.file, None)
        client = _client(args, path)
        if client is not None:
            with client:
                record = client.add_model(args.source, **fields)
            print(f"added {record['id']} ({record['provider']}: {', '.join(record['capabilities'])})")
            print(f"serving now at {client.url}; written to the daemon's config")
            return 0
        import msgspec

        req = msgspec.convert({"source": args.source, **fields}, AddModel)
        model = add_offline(path, req)
    except (ConfigError, PluginError) as e:
        return _fail(f"{e} (nothing was changed)")
    except LoomError as e:
        return _fail(_admin_hint(e))
    print(f"added {model['id']} ({model['provider']}: {', '.join(model.get('capabilities', []))}) to {path}")
    print("no daemon answered; `loom serve` serves it from its next start")
    return 0


def rm_command(args: argparse.Namespace) -> int:
    from .catalog.edits import remove_offline

    try:
        path = _config(args)
        client = _client(args, path)
        if client is not None:
            with client:
                client.remove_model(args.id)
            print(f"removed {args.id}: unloaded and dropped from the daemon's config (files left on disk)")
            return 0
        remove_offline(path, args.id)
    except (ConfigError, PluginError) as e:
        return _fail(f"{e} (nothing was changed)")
    except LoomError as e:
        return _fail(_admin_hint(e))
    print(f"removed {args.id} from {path} (files left on disk)")
    return 0


def reload_command(args: argparse.Namespace) -> int:
    path = _config(args)
    client = _client(args, path)
    if client is None:
        return _fail(
            f"{daemon_address(args.url, args.config).unreachable()} (`loom serve` reads {path} when it starts)"
        )
    try:
        with client:
            summary = client.reload_models()
    except LoomError as e:
        return _fail(_admin_hint(e))
    for key in ("added", "removed", "changed"):
        if summary[key]:
            print(f"{key}: {', '.join(summary[key])}")
    if not any(summary[k] for k in ("added", "removed", "changed")):
        print("no change to [[models]]")
    if summary["restart_needed"]:
        print(f"changed sections that need a restart: {', '.join(summary['restart_needed'])}")
    return 0


# --- scan -------------------------------------------------------------------------------------


def scan_command(args: argparse.Namespace) -> int:
    from .catalog.stores import scan

    try:
        path = _config(args)
        taken = set(config_file.model_ids(path.read_text(encoding="utf-8"), str(path)))
    except (OSError, ConfigError):
        taken = set()
    found = scan(args.hf_cache, args.ollama, args.lmstudio, taken)
    if args.json:
        print(json.dumps({"models": [f.to_dict() for f in found]}, indent=2))
        return 0
    if not found:
        print("nothing found in the Hugging Face cache, Ollama's store or LM Studio's folder")
        return 0
    for f in found:
        print(f"{f.store}  {f.name}  {human_size(f.size)}  {f.summary or ''}".rstrip())
        if f.model is None:
            print(f"  cannot serve it: {f.note}")
        else:
            print(f"  {f.add_command()}")
            print("  " + toml_entry(f.model).replace("\n", "\n  "))
        print()
    return 0


# --- pull -------------------------------------------------------------------------------------


def _ask(quants) -> Any:
    print("this repository has several quantisations:")
    for i, q in enumerate(quants, 1):
        print(f"  {i}. {q.describe()}")
    while True:
        answer = input(f"which one [1-{len(quants)}]? ").strip()
        if answer.isdigit() and 1 <= int(answer) <= len(quants):
            return quants[int(answer) - 1]
        for q in quants:
            if answer.lower() == q.label.lower():
                return q


def _pull(repo_id: str, file: str | None, revision: str | None):
    from .catalog import hub

    choose = _ask if sys.stdin.isatty() else None
    pulled = hub.pull(repo_id, file=file, revision=revision, choose=choose)
    what = f"{pulled.quantisation} ({pulled.gguf.name})" if pulled.gguf else f"{len(pulled.files)} files"
    print(f"pulled {repo_id}: {what} in {pulled.snapshot}")
    return pulled


def pull_command(args: argparse.Namespace) -> int:
    try:
        pulled = _pull(args.repo, args.file, args.revision)
    except LoomError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return _fail("interrupted; `loom pull` again fetches only what is missing")
    file_arg = f" --file {pulled.gguf.name}" if pulled.gguf else ""
    if not args.add:
        print(f"serve it: loom models add {args.repo}{file_arg}")
        return 0
    args.source, args.file, args.pull = args.repo, (pulled.gguf.name if pulled.gguf else None), False
    return add_command(args)


# --- argparse ---------------------------------------------------------------------------------


def _where(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="config file (default: $LOOM_CONFIG or the user config)")
    parser.add_argument("--url", help="the daemon (default: $LOOM_URL or the config's host and port)")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", help="the model id (default: from the file, folder or repository name)")
    parser.add_argument("--provider", help="serve it with this provider instead of the one detected")
    parser.add_argument(
        "--capability",
        action="append",
        choices=["chat", "completion", "embedding", "image", "vision", "translation", "rerank"],
        help="narrow what it serves (repeat for several)",
    )
    parser.add_argument("--alias", action="append", help="another name for it (repeat for several)")
    parser.add_argument(
        "-o", "--option", action="append", type=_option, metavar="KEY=VALUE", help="a provider option, e.g. n_ctx=4096"
    )
    parser.add_argument("--description")
    parser.add_argument("--keep-alive", help='unload after this long idle: "5m", "1h", 0, -1')


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add ``models`` and ``pull`` to the ``loom`` command."""
    models = sub.add_parser("models", help="list, add, remove and find models")
    msub = models.add_subparsers(dest="models_command", required=True)

    ls = msub.add_parser("ls", aliases=["list"], help="configured models: provider, capabilities, size, loaded")
    ls.add_argument("--json", action="store_true", help="print JSON")
    _where(ls)
    ls.set_defaults(func=ls_command)

    show = msub.add_parser("show", help="one model in detail")
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="print JSON")
    _where(show)
    show.set_defaults(func=show_command)

    add = msub.add_parser(
        "add", help="add a GGUF file, a model folder or a hub id (a running daemon serves it at once)"
    )
    add.add_argument("source", help="a .gguf file, a transformers/diffusers/open_clip folder, or org/name")
    add.add_argument("--file", help="which GGUF in a folder or repository: a file name or a quantisation (Q4_K_M)")
    add.add_argument("--pull", action="store_true", help="download a hub id first if it is not cached")
    _add_arguments(add)
    _where(add)
    add.set_defaults(func=add_command)

    rm = msub.add_parser("rm", aliases=["remove"], help="remove a model from the config (files stay on disk)")
    rm.add_argument("id")
    _where(rm)
    rm.set_defaults(func=rm_command)

    reload = msub.add_parser("reload", help="make the running daemon take in hand edits of [[models]]")
    _where(reload)
    reload.set_defaults(func=reload_command)

    scan = msub.add_parser("scan", help="models already in the Hugging Face cache, Ollama and LM Studio")
    scan.add_argument("--json", action="store_true", help="print JSON")
    scan.add_argument("--hf-cache", help="the Hugging Face hub cache (default: HF_HUB_CACHE / HF_HOME/hub)")
    scan.add_argument("--ollama", help="Ollama's models folder (default: $OLLAMA_MODELS or ~/.ollama/models)")
    scan.add_argument("--lmstudio", help="LM Studio's models folder (default: ~/.lmstudio/models)")
    scan.add_argument("--config", help="ids are suggested that this config does not use yet")
    scan.set_defaults(func=scan_command)

    pull = sub.add_parser("pull", help="download a model from the Hugging Face hub into its cache")
    pull.add_argument("repo", help="org/name")
    pull.add_argument("--file", help="for a GGUF repository: the quantisation (Q4_K_M) or file to fetch")
    pull.add_argument("--revision", help="a branch, tag or commit (default: main)")
    pull.add_argument("--add", action="store_true", help="then add it, as `loom models add` does")
    _add_arguments(pull)
    _where(pull)
    pull.set_defaults(func=pull_command)
