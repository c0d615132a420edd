"""A local stand-in for the Hugging Face hub, for ``loom pull`` under ``HF_ENDPOINT``.

It speaks the part of the hub's HTTP API that ``huggingface_hub`` uses to download (read from
its source: ``HfApi.repo_info``, ``HfApi.list_repo_tree``, ``get_hf_file_metadata`` and
``http_get``):

- ``GET /api/models/{repo}[/revision/{rev}]``: the repository's info (id, sha, siblings);
- ``GET /api/models/{repo}/tree/{rev}``: its files with size, git oid and LFS sha256;
- ``HEAD`` / ``GET /{repo}/resolve/{rev}/{path}``: a file's metadata headers (``X-Repo-Commit``,
  ``ETag``, ``X-Linked-Etag``, ``X-Linked-Size``) and its bytes, honouring ``Range``;
- 404s with ``X-Error-Code`` (``RepoNotFound``, ``EntryNotFound``) as the hub sends them.

Faults for resume tests: ``cut[path] = n`` ends the first full GET of ``path`` after ``n`` bytes
(the connection closes mid-body); ``slow[path] = seconds`` waits that long per 16 kB sent.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHUNK = 16 * 1024
LFS_MIN = 1024 * 1024  # files this big, and weights of any size, are LFS files on the hub
_LFS_SUFFIXES = (".gguf", ".safetensors", ".bin", ".pt", ".pth")


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes | Path]] = {}
        #: (method, path, Range header) of every request, in order.
        self.requests: list[tuple[str, str, str | None]] = []
        #: Bytes of file content sent, by repo path ("org/name/file").
        self.sent: dict[str, int] = {}
        self.cut: dict[str, int] = {}
        self.slow: dict[str, float] = {}
        self._meta: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- content -----------------------------------------------------------------------------

    def add_repo(self, repo_id: str, files: dict[str, bytes | Path]) -> None:
        self.repos[repo_id] = dict(files)

    def add_folder(self, repo_id: str, folder: Path) -> None:
        self.add_repo(repo_id, {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()})

    def commit(self, repo_id: str) -> str:
        listing = ";".join(f"{name}:{self.meta(repo_id, name)['size']}" for name in sorted(self.repos[repo_id]))
        return hashlib.sha1(listing.encode()).hexdigest()

    def _bytes(self, repo_id: str, name: str) -> bytes:
        data = self.repos[repo_id][name]
        return data.read_bytes() if isinstance(data, Path) else data

    def meta(self, repo_id: str, name: str) -> dict:
        key = (repo_id, name)
        if key not in self._meta:
            data = self._bytes(repo_id, name)
            oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            lfs = len(data) >= LFS_MIN or name.endswith(_LFS_SUFFIXES)
            self._meta[key] = {
                "size": len(data),
                "oid": oid,
                "sha256": hashlib.sha256(data).hexdigest() if lfs else None,
            }
        return self._meta[key]

    # --- serving -----------------------------------------------------------------------------

    def start(self) -> str:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def gets(self, repo_id: str, name: str) -> list[str | None]:
        """The Range header of every GET of one file (None: the whole file)."""
        path = f"/{repo_id}/resolve/"
        return [r for m, p, r in self.requests if m == "GET" and p.startswith(path) and p.endswith("/" + name)]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _route(self, head: bool) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        with self.fake._lock:
            self.fake.requests.append((self.command, path, self.headers.get("Range")))
        m = re.match(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?$", path)
        if m:
            return self._tree(m.group(1), m.group(3) or "")
        m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?$", path)
        if m:
            return self._info(m.group(1))
        m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if m:
            return self._file(m.group(1), m.group(3), head)
        self._json({"error": "not found"}, 404)

    def _json(self, body, status: int = 200, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _no_repo(self, repo_id: str) -> bool:
        if repo_id in self.fake.repos:
            return False
        self._json(
            {"error": "Repository not found"},
            404,
            {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"},
        )
        return True

    def _info(self, repo_id: str) -> None:
        if self._no_repo(repo_id):
            return
        files = self.fake.repos[repo_id]
        self._json(
            {
                "id": repo_id,
                "sha": self.fake.commit(repo_id),
                "private": False,
                "siblings": [{"rfilename": name} for name in sorted(files)],
            }
        )

    def _tree(self, repo_id: str, under: str) -> None:
        if self._no_repo(repo_id):
            return
        entries = []
        for name in sorted(self.fake.repos[repo_id]):
            if under and not name.startswith(under.rstrip("/") + "/"):
                continue
            meta = self.fake.meta(repo_id, name)
            entry = {"type": "file", "path": name, "size": meta["size"], "oid": meta["oid"]}
            if meta["sha256"]:
                entry["lfs"] = {"oid": meta["sha256"], "size": meta["size"], "pointerSize": 134}
            entries.append(entry)
        self._json(entries)

    def _file(self, repo_id: str, name: str, head: bool) -> None:
        if self._no_repo(repo_id):
            return
        commit = self.fake.commit(repo_id)
        if name not in self.fake.repos[repo_id]:
            self._json(
                {"error": "Entry not found"},
                404,
                {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found", "X-Repo-Commit": commit},
            )
            return
        meta = self.fake.meta(repo_id, name)
        size = meta["size"]
        start = 0
        rng = self.headers.get("Range")
        if rng and not head:
            m = re.match(r"bytes=(\d+)-$", rng.strip())
            start = int(m.group(1)) if m else 0
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("Accept-Ranges", "bytes")
        if meta["sha256"]:
            self.send_header("ETag", f'"{meta["oid"]}"')
            self.send_header("X-Linked-Etag", f'"{meta["sha256"]}"')
            self.send_header("X-Linked-Size", str(size))
        else:
            self.send_header("ETag", f'"{meta["oid"]}"')
        if start:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        if head:
            return
        key = f"{repo_id}/{name}"
        data = self.fake._bytes(repo_id, name)[start:]
        cut = self.fake.cut.pop(key, None) if not start else None
        delay = self.fake.slow.get(key, 0.0)
        sent = 0
        for i in range(0, len(data), CHUNK):
            piece = data[i : i + CHUNK]
            if cut is not None and sent + len(piece) > cut:
                piece = piece[: cut - sent]
            try:
                self.wfile.write(piece)
                self.wfile.flush()
            except OSError:
                return
            sent += len(piece)
            with self.fake._lock:
                self.fake.sent[key] = self.fake.sent.get(key, 0) + len(piece)
            if cut is not None and sent >= cut:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if delay:
                time.sleep(delay)
