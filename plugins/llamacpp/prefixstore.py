"""Named prefixes on disk: a prompt's KV state kept across restarts, under the name a client gave it.

A request's ``prompt_cache_key`` (as OpenAI clients send it) names its prompt's prefix. Once the
prompt is evaluated its slot's state is written to ``<model data dir>/prompt-cache/`` (a thread of
its own writes it, so the batch loop does not wait on the disk); after a restart, the first request
with that key reads the file and the batch loop restores it into a slot, as it restores a state
from the RAM cache (:mod:`.promptcache`).

A state is only valid for the exact model and context it was made in, so each file carries a
:class:`Fingerprint`: the model file (its size and the SHA-256 of its first and last MiB: a cheap
hash that tells files apart without reading gigabytes; two files alike in both ends and in size
are taken as one), the cells per slot, the KV cache's types and layout (flash attention stores V
untransposed) and the llama.cpp build (llama-cpp-python's version, which pins its vendored
llama.cpp, and ``LLAMA_BUILD_NUMBER`` where the binding has it). A file that does not match is refused
with a log line naming what differs, and is overwritten by the next state saved under its name.

File layout: ``LOOMPFX1``, a little-endian u32 header length, the header (JSON: name, fingerprint,
token count, state size), the tokens (int32) and the state's bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("loom.llamacpp.prefixes")

MAGIC = b"LOOMPFX1"
SUFFIX = ".prefix"
_MIB = 2**20


@dataclass(frozen=True)
class Fingerprint:
    """What must be equal for a saved state to be valid in a context."""

    model: str  # "<size>:<sha256 of first MiB + last MiB>"
    n_ctx_slot: int
    type_k: int
    type_v: int
    flash_attn: bool
    build: str

    def differences(self, other: Fingerprint) -> list[str]:
        mine, theirs = asdict(self), asdict(other)
        return [f"{k} {theirs[k]!r} (this model: {mine[k]!r})" for k in mine if mine[k] != theirs[k]]


def model_hash(path: str | Path) -> str:
    """The model file's size and the SHA-256 of its first and last MiB (see the module docstring)."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as f:
        digest.update(f.read(_MIB))
        if size > _MIB:
            f.seek(max(_MIB, size - _MIB))
            digest.update(f.read(_MIB))
    return f"{size}:{digest.hexdigest()}"


@dataclass(frozen=True)
class StoredPrefix:
    """A named prefix read from disk: its tokens and the state's bytes."""

    name: str
    tokens: list[int]
    state: bytearray


class PrefixStore:
    """The named prefixes of one model, in one folder, for one :class:`Fingerprint`.

    ``budget``: bytes of files kept; past it the least recently written files are removed.
    """

    def __init__(self, folder: str | Path, fingerprint: Fingerprint, budget: int) -> None:
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.budget = budget
        self._lock = threading.Lock()
        #: name -> the tokens its file holds (as this process wrote or read it); absent: not known yet.
        self._known: dict[str, list[int] | None] = {}
        self._writing: set[str] = set()
        self.refused = 0
        self.written = 0

    def path(self, name: str) -> Path:
        return self.folder / (hashlib.sha256(name.encode("utf-8")).hexdigest()[:40] + SUFFIX)

    # --- reading ---------------------------------------------------------------------------------

    def load(self, name: str) -> StoredPrefix | None:
        """The prefix saved under ``name`` if there is one valid for this model; None otherwise (a
        file made for another model, context or build is refused with a log line)."""
        path = self.path(name)
        try:
            with path.open("rb") as f:
                header = _read_header(f)
                if header is None:
                    self._refuse(name, path, "it is not a Loom prefix file")
                    return None
                theirs = Fingerprint(**header["fingerprint"])
                if theirs != self.fingerprint or header.get("name") != name:
                    why = self.fingerprint.differences(theirs) or [f"name {header.get('name')!r}"]
                    self._refuse(name, path, "made for " + ", ".join(why))
                    return None
                n_tokens, n_state = int(header["tokens"]), int(header["state_bytes"])
                raw = f.read(4 * n_tokens)
                state = bytearray(n_state)
                got = f.readinto(state)
        except FileNotFoundError:
            with self._lock:
                self._known[name] = None
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            self._refuse(name, path, f"it could not be read ({e})")
            return None
        if len(raw) != 4 * n_tokens or got != n_state:
            self._refuse(name, path, "it is truncated")
            return None
        tokens = list(struct.unpack(f"<{n_tokens}i", raw))
        with self._lock:
            self._known[name] = tokens
        return StoredPrefix(name, tokens, state)

    def _refuse(self, name: str, path: Path, why: str) -> None:
        log.warning("prompt cache: refusing the saved prefix %r (%s): %s", name, path, why)
        self.refused += 1
        with self._lock:
            self._known[name] = None  # the next state saved under the name replaces it

    # --- writing ---------------------------------------------------------------------------------

    def wants(self, name: str, tokens: list[int]) -> bool:
        """Whether the state of a prompt of ``tokens`` named ``name`` should be written: there is no
        valid file for the name yet, or the file's prompt shares less than half of this one."""
        from .promptcache import common_prefix

        with self._lock:
            if name in self._writing:
                return False
            if name not in self._known:
                self._known[name] = self._peek(name)
            saved = self._known[name]
        return saved is None or 2 * common_prefix(saved, tokens) < len(tokens)

    def _peek(self, name: str) -> list[int] | None:
        """The tokens of ``name``'s file if it is valid here, without reading the state."""
        try:
            with self.path(name).open("rb") as f:
                header = _read_header(f)
                if header is None or Fingerprint(**header["fingerprint"]) != self.fingerprint:
                    return None
                n = int(header["tokens"])
                raw = f.read(4 * n)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return list(struct.unpack(f"<{n}i", raw)) if len(raw) == 4 * n else None

    def write_later(self, name: str, tokens: list[int], state: memoryview | bytes) -> None:
        """Write the file on a thread of its own; ``state`` must not change meanwhile."""
        with self._lock:
            if name in self._writing:
                return
            self._writing.add(name)
        threading.Thread(
            target=self._write, args=(name, list(tokens), state), name="loom-prefix-write", daemon=True
        ).start()

    def _write(self, name: str, tokens: list[int], state: memoryview | bytes) -> None:
        path = self.path(name)
        temp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            header = json.dumps(
                {
                    "name": name,
                    "fingerprint": asdict(self.fingerprint),
                    "tokens": len(tokens),
                    "state_bytes": len(memoryview(state)),
                }
            ).encode("utf-8")
            with temp.open("wb") as f:
                f.write(MAGIC + struct.pack("<I", len(header)) + header)
                f.write(struct.pack(f"<{len(tokens)}i", *tokens))
                f.write(state)
            os.replace(temp, path)
            with self._lock:
                self._known[name] = tokens
            self.written += 1
            log.info("prompt cache: saved the prefix %r (%d tokens) to %s", name, len(tokens), path)
            self._prune(keep=path)
        except OSError as e:
            log.warning("prompt cache: could not save the prefix %r to %s: %s", name, path, e)
            temp.unlink(missing_ok=True)
        finally:
            with self._lock:
                self._writing.discard(name)

    def _prune(self, keep: Path) -> None:
        """Remove the least recently written files past the budget (never ``keep``)."""
        files = []
        for p in self.folder.glob("*" + SUFFIX):
            try:
                st = p.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in files)
        for _, size, p in sorted(files):
            if total <= self.budget:
                break
            if p == keep:
                continue
            p.unlink(missing_ok=True)
            total -= size
            log.info("prompt cache: removed %s to keep the saved prefixes within budget", p)
        with self._lock:
            self._known = {n: t for n, t in self._known.items() if self.path(n).exists()}


def _read_header(f) -> dict | None:
    if f.read(len(MAGIC)) != MAGIC:
        return None
    raw = f.read(4)
    if len(raw) != 4:
        return None
    (length,) = struct.unpack("<I", raw)
    if length > _MIB:
        return None
    return json.loads(f.read(length).decode("utf-8"))
