"""Build llama.cpp's own `llama-server` and `llama-batched-bench` once, from the llama.cpp that the
installed llama-cpp-python vendors, so the benchmarks compare Loom with the same C++ at the same commit.

    python bench/build_llama_cpp.py          # prints the folder holding both binaries

The sdist of the installed version (pip's download of it, kept in the cache folder) holds
vendor/llama.cpp; it is built Release with -DGGML_NATIVE=ON as the Python wheel is built from source
here, with no web UI (the prebuilt one would be a download) and no curl or TLS (nothing is fetched).
The binaries are kept under $LOOM_BENCH_CACHE (default ~/.cache/loom-bench)/llama.cpp-<version>/bin
and reused while they exist: the first run takes some minutes, later ones none.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

TARGETS = ("llama-server", "llama-batched-bench")


def cache_root() -> Path:
    return Path(os.environ.get("LOOM_BENCH_CACHE", Path.home() / ".cache" / "loom-bench"))


def installed_version() -> str:
    return importlib.metadata.version("llama-cpp-python")


def bin_dir(version: str | None = None) -> Path:
    return cache_root() / f"llama.cpp-{version or installed_version()}" / "bin"


def binary(name: str) -> Path:
    """The path of one built tool; builds both first when they are missing."""
    path = bin_dir() / name
    if not path.exists():
        build()
    return path


def sdist(version: str) -> Path:
    root = cache_root()
    name = f"llama_cpp_python-{version}.tar.gz"
    if not (root / name).exists():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-deps",
             "--no-binary", ":all:", "-d", str(root), "-q"],
            check=True,
        )  # fmt: skip
    return root / name


def build() -> Path:
    version = installed_version()
    out = bin_dir(version)
    if all((out / t).exists() for t in TARGETS):
        return out
    work = out.parent
    source = work / "src"
    if not (source / "CMakeLists.txt").exists():
        prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
        with tarfile.open(sdist(version)) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            for m in members:
                m.name = m.name[len(prefix) :]
            tar.extractall(source, members=members, filter="data")
    build_dir = work / "build"
    jobs = str(os.cpu_count() or 2)
    print(f"building llama.cpp {version} (llama-cpp-python's vendored copy) in {build_dir}", file=sys.stderr)
    subprocess.run(
        ["cmake", "-S", str(source), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
         "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
         "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_TESTS=OFF",
         "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_SERVER=ON"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    subprocess.run(
        ["nice", "cmake", "--build", str(build_dir), "--config", "Release", "-j", jobs, "--target", *TARGETS],
        check=True,
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    for t in TARGETS:
        shutil.copy2(build_dir / "bin" / t, out / t)
    return out


if __name__ == "__main__":
    print(build())
