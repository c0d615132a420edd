"""The one atomic-write helper: the new content or the old, never half, and no temporaries left."""

from __future__ import annotations

import pytest
from loom.daemon.atomic import replacing, write_atomic


def test_write_replaces_and_creates_the_folder(tmp_path):
    path = tmp_path / "a" / "b.json"
    write_atomic(path, b"one")
    write_atomic(path, b"two")
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "index.faiss"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), replacing(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crashed midway")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["index.faiss"]


def test_the_fault_hook_fails_a_write_over_its_room_like_a_full_disk(tmp_path, monkeypatch):
    """LOOM_FAULT_DISK_FREE_BYTES (the full-disk tests' stand-in for a small filesystem): small
    writes pass, a bigger one is a StorageError saying the disk is full, and nothing is left."""
    from loom.sdk.errors import StorageError

    monkeypatch.setenv("LOOM_FAULT_DISK_FREE_BYTES", "8")
    write_atomic(tmp_path / "small", b"12345678")
    with pytest.raises(StorageError, match="No space left"):
        write_atomic(tmp_path / "big", b"123456789")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small"]
