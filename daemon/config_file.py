"""Where the config file lives, writing it on first run, and editing its ``[[models]]`` in place.

``loom serve`` without ``--config`` or ``LOOM_CONFIG`` reads the user config in the platform's
config dir (platformdirs: ``~/.config/loom/plugins.toml`` on Linux, honouring ``XDG_CONFIG_HOME``;
``~/Library/Application Support/loom/plugins.toml`` on macOS). The first run writes it from the
default that ships inside the package (``loom/daemon/plugins.toml``, the repository's root
``plugins.toml``), comments and all, so the user edits a documented file rather than an empty one.

Edits made by ``loom models add`` / ``rm`` and ``POST`` / ``DELETE /admin/models`` go through
tomlkit, which keeps the user's comments, order and layout (tomllib, which reads the config,
cannot write). A write replaces the file atomically: a failed edit leaves the old file whole.
"""

from __future__ import annotations

import importlib.resources
import os
import tempfile
from pathlib import Path
from typing import Any

from loom.sdk.errors import ConfigError

APP = "loom"
CONFIG_NAME = "plugins.toml"
#: Written above the shipped default when it becomes a user's config.
USER_HEADER = """\
# Your Loom config, written on Loom's first run from the default that ships with it.
# `loom models add` / `loom models rm` edit the [[models]] below and keep your comments.
#
"""


def packaged_default_text() -> str:
    """The default config shipped as package data (the repository's ``plugins.toml``)."""
    return importlib.resources.files("loom.daemon").joinpath(CONFIG_NAME).read_text(encoding="utf-8")


def user_config_path() -> Path:
    """The user config in the platform's config dir; it may not exist yet."""
    import platformdirs

    return Path(platformdirs.user_config_dir(APP, appauthor=False)) / CONFIG_NAME


def config_path(path: str | os.PathLike | None = None) -> Path:
    """The config a command uses: ``path``, else ``LOOM_CONFIG``, else the user config."""
    chosen = path or os.environ.get("LOOM_CONFIG")
    return Path(os.path.expanduser(chosen)) if chosen else user_config_path()


def ensure_config(path: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """``config_path(path)``; the user config is written from the shipped default when missing.

    Returns (path, created). A path named by ``--config`` or ``LOOM_CONFIG`` is never created:
    a typo there should be an error, not a fresh config.
    """
    target = config_path(path)
    if path or os.environ.get("LOOM_CONFIG") or target.exists():
        return target, False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "x", encoding="utf-8") as f:  # "x": never overwrite a config made meanwhile
            f.write(USER_HEADER + packaged_default_text())
    except FileExistsError:
        return target, False
    except OSError as e:
        raise ConfigError(f"cannot create the user config {target}: {e.strerror or e}") from None
    return target, True


# --- editing [[models]] -------------------------------------------------------------------------


def _parse(text: str, source: str):
    import tomlkit
    from tomlkit.exceptions import ParseError

    try:
        return tomlkit.parse(text)
    except ParseError as e:
        raise ConfigError(f"{source}: invalid TOML: {e}") from None


def model_ids(text: str, source: str = "config") -> list[str]:
    """The ids of the ``[[models]]`` in ``text``."""
    models = _parse(text, source).get("models") or []
    return [str(m.get("id")) for m in models if hasattr(m, "get")]


def with_model(text: str, model: dict[str, Any], note: str = "", source: str = "config") -> str:
    """``text`` with one more ``[[models]]`` entry; the rest of the file is kept as it was."""
    import tomlkit

    doc = _parse(text, source)
    models = doc.get("models")
    if models is not None and not isinstance(models, (tomlkit.items.AoT, tomlkit.items.Array)):
        raise ConfigError(f"{source}: `models` is not a list of tables")
    if isinstance(models, tomlkit.items.Array):  # `models = [{...}]`: keep that style
        inline_entry = tomlkit.inline_table()
        inline_entry.update(model)
        models.append(inline_entry)
        return tomlkit.dumps(doc)
    entry = tomlkit.table()
    entry.trivia.indent = "\n"  # a blank line between this entry and what comes before
    if note:
        entry.comment(note)
    for key, value in model.items():
        if isinstance(value, dict):
            inline = tomlkit.inline_table()
            inline.update(value)
            value = inline
        entry[key] = value
    if models is None:
        doc.append("models", tomlkit.aot())
        models = doc["models"]
    models.append(entry)
    return tomlkit.dumps(doc)


def without_model(text: str, model_id: str, source: str = "config") -> str:
    """``text`` without the ``[[models]]`` entry whose id is ``model_id`` (ConfigError if none)."""
    import tomlkit

    doc = _parse(text, source)
    models = doc.get("models") or []
    for i, m in enumerate(models):
        if hasattr(m, "get") and m.get("id") == model_id:
            del models[i]
            break
    else:
        raise ConfigError(f"{source}: no [[models]] entry with id {model_id!r}")
    if not len(models):
        del doc["models"]
    # The blank line that separated the entry stays with the one before it; don't pile them up.
    return tomlkit.dumps(doc).rstrip("\n") + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step, keeping its permissions."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
