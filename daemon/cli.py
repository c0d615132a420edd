"""The ``loom`` command: serve, tui, run, models, pull, service, plugins, new-plugin, jobs."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from loom.sdk.errors import ConfigError, PluginError

from . import cli_jobs, cli_models, cli_plugins, cli_run, cli_service


def _serve(args: argparse.Namespace) -> int:
    from .app import app_for
    from .config import load_config, parse_duration
    from .config_file import ensure_config
    from .services import build_services
    from .serving import serve

    try:
        path, created = ensure_config(args.config)
        if created:
            print(
                f"loom: wrote the user config {path} (from Loom's default; edit it or use `loom models`)",
                file=sys.stderr,
            )
        config = load_config(path, host=args.host, port=args.port, data_dir=args.data_dir, ray=args.ray)
        services = build_services(config, config_path=path.resolve())
        app = app_for(services)
    except (ConfigError, PluginError) as e:
        print(f"loom: {e}", file=sys.stderr)
        return 2
    level = config.daemon.log_level
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .banner import startup_banner

    log = logging.getLogger("loom")
    for line in startup_banner(services, path.resolve(), _version()):
        log.info("%s", line)
    _say_retention(config)
    # The level, once the banner is out. Building the app applied Litestar's default logging
    # config, which gives the root logger a handler at INFO, so basicConfig above set nothing and
    # every loom.* logger (the access log's line per request among them) stayed at INFO under
    # any log_level: a sixth of the CPU of a small request went to logging.
    logging.getLogger().setLevel(level.upper())
    grace = parse_duration(config.daemon.shutdown_grace, "$.daemon.shutdown_grace")
    serve(
        app,
        services,
        host=config.daemon.host,
        port=config.daemon.port,
        log_level=level,
        grace=3600.0 if grace is None else grace,
    )
    return 0


def _say_retention(config) -> None:
    """Retention deletes what users generated: when it is on, say so at start-up."""
    from .jobs.retention import RetentionPolicy

    said = RetentionPolicy.from_config(config.jobs).describe()
    if said:
        logging.getLogger("loom.jobs").warning(said)


def _openapi(args: argparse.Namespace) -> int:
    """Print the OpenAPI document of the daemon this config describes (no server is started;
    the stores are opened in a temporary data dir, so a running daemon is not disturbed)."""
    import json
    import tempfile

    from .api.openapi import document
    from .app import create_app
    from .config import DEFAULT_CONFIG, load_config
    from .config_file import config_path

    path = config_path(args.config)
    if not path.exists() and not (args.config or os.environ.get("LOOM_CONFIG")):
        path = DEFAULT_CONFIG  # no user config yet: the one `loom serve` would write
    try:
        with tempfile.TemporaryDirectory(prefix="loom-openapi-") as tmp:
            config = load_config(path, data_dir=tmp)
            doc = document(create_app(config))
    except (ConfigError, PluginError) as e:
        print(f"loom: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return 0


def _tui(args: argparse.Namespace) -> int:
    from .cli_address import daemon_address

    url = daemon_address(args.url, args.config).url
    if args.web:
        from loom.tui.web import DEFAULT_PORT, serve

        return serve(url, args.host, args.port or DEFAULT_PORT, public_url=args.public_url)
    from loom.tui import run

    return run(url=url)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("loom-daemon")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loom", description="Loom: one local daemon for generative AI")
    parser.add_argument("--version", action="version", version=f"loom {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the daemon")
    serve.add_argument(
        "--config", help="config file (default: $LOOM_CONFIG, else the user config, written on first run)"
    )
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--data-dir")
    serve.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run models on a Ray cluster: its head's HOST:PORT, or 'auto' (see docs/ray.md; needs loom-daemon[ray])",
    )
    serve.set_defaults(func=_serve)

    spec = sub.add_parser("openapi", help="print the OpenAPI document (JSON) of the daemon a config describes")
    spec.add_argument("--config", help="config file (default: $LOOM_CONFIG, else the user config)")
    spec.set_defaults(func=_openapi)

    tui = sub.add_parser("tui", help="the terminal UI, a client of a running daemon (key: $LOOM_API_KEY)")
    tui.add_argument("--url", help="daemon URL (default: $LOOM_URL, else the config's [daemon] host and port)")
    tui.add_argument("--config", help="config whose [daemon] address to use (default: $LOOM_CONFIG or the user config)")
    tui.add_argument("--web", action="store_true", help="serve the TUI to a browser (textual-serve) instead")
    tui.add_argument("--host", default="127.0.0.1", help="with --web: address to listen on (default 127.0.0.1)")
    tui.add_argument("--port", type=int, help="with --web: port (default 11436)")
    tui.add_argument("--public-url", help="with --web: the URL browsers reach it at, behind a proxy")
    tui.set_defaults(func=_tui)
    cli_run.add_subcommand(sub)  # run PIPELINE
    cli_models.add_subcommands(sub)  # models, pull
    cli_service.add_subcommands(sub)  # service
    cli_plugins.add_subcommands(sub)  # plugins, new-plugin
    cli_jobs.add_subcommands(sub)  # jobs prune

    args = parser.parse_args(argv)
    if args.command is None:  # a bare `loom`: the help, not an error
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
