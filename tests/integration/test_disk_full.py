"""A full disk and an unwritable data dir, for real: the data dir is a tiny tmpfs mounted for the
test (a read-only one for start-up). Output that cannot be written fails with a clear error (507,
or a failed job with code ``storage_error``), nothing half-written is left, and the daemon keeps
serving; a job resumes once there is room again. Those tests are skipped where mounting is not
allowed; the same 507 path runs everywhere with the daemon's fault hook
(``LOOM_FAULT_DISK_FREE_BYTES``, daemon/atomic.py), which fails each write over that size with
``ENOSPC`` after writing what fits, as a full disk does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from loom.sdk.testing.server import LoomServer

from tests.integration.jobs_support import beam_config, small, start, wait

#: What is left free on the filled disk: room for SQLite's small writes (its WAL has grown to its
#: working size in the warm-up), not for one 4096x4096 PNG (about 115 KB from the mock).
LEFT_FREE = 96 * 1024
SIZE = 4096
#: The fault hook's room: a default-size mock image and the job's metadata fit, a 2048x2048 one does not.
FAULT_FREE = 16 * 1024


def mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if run.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({run.stderr.strip() or run.returncode}); needs root and CAP_SYS_ADMIN")


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "disk"
    mount_tmpfs(mount, "size=4m")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    stat = os.statvfs(disk)
    filler = disk / f"filler-{uuid.uuid4().hex}"
    with filler.open("wb") as f:
        f.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))
    return filler


def pictures(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and (p.suffix == ".png" or p.name.endswith(".tmp"))]


def test_start_up_on_an_unwritable_data_dir_stops_naming_it(tmp_path):
    mount = tmp_path / "readonly"
    mount_tmpfs(mount, "ro,size=1m")
    try:
        data_dir = mount / "data"
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "loom.daemon.cli",
                "serve",
                "--config",
                str(Path(__file__).parents[2] / "plugins.toml"),
                "--data-dir",
                str(data_dir),
                "--port",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 2, run.stderr
        assert f"the data dir {data_dir} is not writable" in run.stderr and "Read-only file system" in run.stderr
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_output_clearly_and_the_daemon_keeps_serving(tmp_path, tiny_disk):
    daemon = LoomServer(beam_config(), tmp_path / "work", data_dir=tiny_disk / "data").start()
    try:
        with httpx.Client(base_url=daemon.url, timeout=60) as client:
            assert (
                client.post("/v1/images/generations", json={"model": "bs-image", "prompt": "warm-up"}).status_code
                == 200
            )
            filler = fill(tiny_disk, LEFT_FREE)
            before = pictures(tiny_disk / "data")

            big = {"model": "bs-image", "prompt": "a lighthouse", "size": f"{SIZE}x{SIZE}", "response_format": "url"}
            r = client.post("/v1/images/generations", json=big)
            assert r.status_code == 507, r.text
            error = r.json()["error"]
            assert error["code"] == "storage_error" and "No space left" in error["message"]
            assert pictures(tiny_disk / "data") == before  # no half-written PNG, no temporary

            chat = client.post(
                "/v1/chat/completions", json={"model": "bs-llm", "messages": [{"role": "user", "content": "hi"}]}
            )
            assert chat.status_code == 200  # still serving

            job = start(client, small(width=2048, height=2048, iterations=1, beam_width=4))
            # Its images do not fit, and nor, soon, do the store's writes: whichever comes first,
            # the job ends failed with a storage error, recorded once there is room again.
            time.sleep(3)
            assert client.get("/health").status_code == 200
            assert not any(p.suffix == ".tmp" for p in (tiny_disk / "data" / job["output_dir"]).iterdir())
            filler.unlink()
            failed = wait(client, job["id"], timeout=30)
            assert failed["state"] == "failed" and failed["error"]["code"] == "storage_error", failed
            assert "No space left" in failed["error"]["message"]
            for artifact in failed["artifacts"]:  # what it kept is whole
                assert (tiny_disk / "data" / artifact["path"]).stat().st_size == artifact["bytes"]
            assert client.post(f"/v1/jobs/{job['id']}/resume").status_code == 202
            done = wait(client, job["id"], timeout=120)
            assert done["state"] == "succeeded", done
            assert client.post("/v1/images/generations", json=big).status_code == 200
    finally:
        daemon.stop()


def test_a_full_disk_without_mounting_one_fails_output_clearly_and_the_job_resumes(tmp_path):
    """The 507 path where no filesystem can be mounted (CI without CAP_SYS_ADMIN): the daemon's
    atomic writer fails every write over ``FAULT_FREE`` bytes with ENOSPC after writing what fits."""
    daemon = LoomServer(beam_config(), tmp_path / "work", env={"LOOM_FAULT_DISK_FREE_BYTES": str(FAULT_FREE)})
    data = daemon.data_dir
    daemon.start()
    try:
        with httpx.Client(base_url=daemon.url, timeout=60) as client:
            warm = client.post("/v1/images/generations", json={"model": "bs-image", "prompt": "warm-up"})
            assert warm.status_code == 200, warm.text
            before = pictures(data)

            big = {"model": "bs-image", "prompt": "a lighthouse", "size": f"{SIZE}x{SIZE}", "response_format": "url"}
            r = client.post("/v1/images/generations", json=big)
            assert r.status_code == 507, r.text
            error = r.json()["error"]
            assert error["code"] == "storage_error" and "No space left" in error["message"]
            assert pictures(data) == before  # the part written is gone with its temporary

            chat = client.post(
                "/v1/chat/completions", json={"model": "bs-llm", "messages": [{"role": "user", "content": "hi"}]}
            )
            assert chat.status_code == 200  # still serving

            job = start(client, small(width=2048, height=2048, iterations=1, beam_width=4))
            failed = wait(client, job["id"], timeout=60)
            # Every candidate's image fails to be written (the store's own writes, unlike on a
            # real full disk, still go through), so the search fails naming the disk.
            assert failed["state"] == "failed" and failed["error"]["code"] == "all_candidates_failed", failed
            assert "No space left" in failed["error"]["message"]
            assert not any(p.suffix == ".tmp" for p in (data / job["output_dir"]).iterdir())
            for artifact in failed["artifacts"]:  # what it kept is whole
                assert (data / artifact["path"]).stat().st_size == artifact["bytes"]

        del daemon.env["LOOM_FAULT_DISK_FREE_BYTES"]  # room again
        daemon.restart()
        with httpx.Client(base_url=daemon.url, timeout=60) as client:
            assert client.post(f"/v1/jobs/{job['id']}/resume").status_code == 202
            done = wait(client, job["id"], timeout=120)
            assert done["state"] == "succeeded", done
            assert client.post("/v1/images/generations", json=big).status_code == 200
    finally:
        daemon.stop()
