"""``centrifuge bench``: speed figures measured against this machine's own ceilings, in one run.

Everything is timed in the same process, one after the other, so ratios hold on a noisy machine.
Figures: matrix-product ceilings (fp32, bf16), FLOPs per clip (``torch.utils.flop_counter``),
training clips/s for the fp32 eager path and the optimised path (bf16 autocast + channels_last_3d
where the CPU has fast bf16, else channels_last_3d in fp32), inference seconds per 64×224×224
clip, ``separate`` frames/s end to end, decoding frames/s, and peak resident memory.
"""

from __future__ import annotations

import copy
import json
import math
import resource
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from .devices import autocast_dtype, cpu_has_fast_bf16, resolve_device
from .models import MODEL_CONFIGS, build_model


def _best_time(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def _best_times_interleaved(fns: Sequence[Callable[[], object]], repeats: int = 3) -> list[float]:
    """The best time of each of ``fns``, run in turn ``repeats`` times after one warm-up each."""
    for fn in fns:
        fn()
    best = [math.inf] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            started = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - started)
    return best


def peak_memory_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_gflops(dtype: torch.dtype, device: torch.device, size: int = 2048) -> float:
    """GFLOP/s of a square matrix product; the size shrinks until one product takes under ~1 s."""
    device = torch.device(device)

    def product() -> None:
        a @ b
        if device.type == "cuda":  # kernels run asynchronously: time the work, not its launch
            torch.cuda.synchronize(device)

    while True:
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        started = time.perf_counter()
        product()
        if time.perf_counter() - started < 1.0 or size <= 256:
            break
        size //= 2
    seconds = _best_time(product, repeats=3 if device.type == "cpu" else 10)
    return 2 * size**3 / seconds / 1e9


def count_flops(model: torch.nn.Module, clip: torch.Tensor, backward: bool) -> float:
    """FLOPs per clip of one forward (and backward) pass, counted by PyTorch. Training passes use
    two clips (BatchNorm needs more than one value per channel) and report half."""
    with FlopCounterMode(display=False) as counter:
        if backward:
            model(clip.expand(2, *clip.shape[1:]).contiguous()).abs().mean().backward()
        else:
            with torch.no_grad():
                model(clip)
    return float(counter.get_total_flops()) / (2 if backward else 1)


def _training_step(model_name: str | torch.nn.Module, batch: int, frames: int, size: int, device: torch.device,
                   optimised: bool) -> Callable[[], None]:
    """One step of the trainer (``train.train_step``: blend, forward, the PIT loss, backward, Adam)
    on random layer pairs, for a copy of the model (or a model built by name)."""
    from .config import TrainConfig
    from .train import train_step

    torch.manual_seed(0)
    model = (copy.deepcopy(model_name) if isinstance(model_name, torch.nn.Module) else build_model(model_name)).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    layers = torch.rand(batch, 2, 3, frames, size, size, device=device)
    alpha = torch.full((batch,), 0.5, device=device)
    amp = autocast_dtype(device, "auto") if optimised else None
    if optimised:
        model = model.to(memory_format=torch.channels_last_3d)
    config = TrainConfig()

    def step():
        train_step(model, optimizer, layers, alpha, config, amp)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def training_clips_per_second(model_name: str | torch.nn.Module, batch: int, frames: int, size: int, device: torch.device, optimised: bool,
                              steps: int = 3) -> float:
    """Clips/s of the trainer's own step on random layer pairs: the loss is part of what a step
    costs. ``model_name`` may be a built model (a copy is trained, the original is left as it was)."""
    return batch / _best_time(_training_step(model_name, batch, frames, size, device, optimised), repeats=steps)


def training_step_profile(model: str | torch.nn.Module, batch: int, frames: int, size: int, device: torch.device, rows: int = 25) -> list[str]:
    """Where one optimised training step spends its time: PyTorch's profiler table of the ``rows``
    operators with the most self time on the device (CPU time on the CPU), as lines of text."""
    from torch.profiler import ProfilerActivity, profile

    step = _training_step(model, batch, frames, size, device, optimised=True)
    step()  # warm-up: cuDNN's algorithm search is not the step
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows).splitlines()


def inference_seconds(model: torch.nn.Module, frames: int, size: int, device: torch.device, optimised: bool) -> float:
    """Seconds per clip; the optimised path is what ``separate`` runs: BatchNorm folded, bf16
    autocast and channels_last_3d where they pay off."""
    from .models import fold_batchnorm

    model = model.to(device).eval()
    clip = torch.rand(1, 3, frames, size, size, device=device)
    amp = autocast_dtype(device, "auto") if optimised else None
    if optimised:
        model = fold_batchnorm(model).to(memory_format=torch.channels_last_3d)
        clip = clip.contiguous(memory_format=torch.channels_last_3d)

    def run():
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            model(clip)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return _best_time(run, repeats=2)


def separate_frames_per_second(height: int, num_frames: int, device: str, model_path: str | None = None) -> float:
    """``separate`` end to end (decode, network, encode) on a generated ``height``p input, with the
    bundled model or ``model_path``."""
    return separate_timing(height, num_frames, device, model_path)["frames_per_second"]


def separate_timing(height: int, num_frames: int, device: str, model_path: str | None = None, encoder_preset: str | None = None) -> dict:
    """Frames/s of ``centrifuge separate`` on a generated ``height``p input and where its time went
    (seconds per stage, from the run's info.json; ``encode_threads`` runs beside the others).
    It runs in a fresh process through the command line, so it is set up as a user's run is
    (``cli.tune_for_streaming``); frames/s is the report's own (model loading not counted).
    ``encoder_preset``: x264's (default: separate's)."""
    import subprocess
    import sys

    from .synthetic import synthetic_video
    from .video import write_video

    width = (height * 16 // 9) // 2 * 2
    with tempfile.TemporaryDirectory() as tmp:
        video = write_video(Path(tmp) / f"input{height}p.mp4", synthetic_video(0, num_frames, height, width), fps=25)
        command = ["separate", str(video), "-o", str(Path(tmp) / "out"), "--quiet", "--device", device]
        command += ["--model", str(model_path)] * (model_path is not None) + ["--encoder-preset", encoder_preset] * (encoder_preset is not None)
        done = subprocess.run([sys.executable, "-c", "import sys; from centrifuge.cli import main; sys.exit(main(sys.argv[1:]))", *command],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"separate failed in the bench: {(done.stderr.strip().splitlines() or ['no message'])[-1]}")
        folder = Path(tmp) / "out" / video.stem
        info = json.loads((folder / "info.json").read_text())
        layer_kib = sum(f.stat().st_size for f in folder.glob("layer*.mp4")) / 1024
    return {"frames": num_frames, "size": [height, width], "frames_per_second": info["frames_per_second"], "preset": info["encoder_preset"],
            "layer_files_kib": layer_kib, "ms_per_frame": {k: 1000 * v / num_frames for k, v in info["stage_seconds"].items()}}


def separate_figures(device: str = "auto", quick: bool = False) -> dict:
    """``bench --only separate``: 224p and 720p frames/s with their stage breakdown, 1080p peak
    memory, the network's work per output frame, and (with the shared videos) how fine detail is
    handed out at 720p and whether window joins show."""
    from .separate import DEFAULT_OVERLAP, DEFAULT_WINDOW, work_per_frame

    n = 32 if quick else 96
    out: dict = {"224p": separate_timing(224, n, device), "720p": separate_timing(720, n, device)}
    out["720p_over_224p"] = out["720p"]["frames_per_second"] / out["224p"]["frames_per_second"]
    for preset in ("veryfast", "ultrafast"):  # the default before session 28, and what x264's share of 720p is
        out[f"720p_{preset}"] = separate_timing(720, n, device, encoder_preset=preset)
    out["1080p_memory"] = separate_memory_by_length((n / 25 / 60,), fps=25, height=1080)[0]
    out["work_per_output_frame"] = {"window": DEFAULT_WINDOW, "overlap": DEFAULT_OVERLAP, "64_frames": work_per_frame(64),
                                    "long_video": work_per_frame(100_000)}
    from .evaluate import default_videos_dir

    videos = default_videos_dir()
    if videos is not None and not quick:
        out.update(_detail_and_seams(videos))
    return out


def _detail_and_seams(videos: Path) -> dict:
    from .evaluate import HELD_BACK_VIDEOS, benchmark_pairs, black_filter_oracle, fine_detail_shares, seam_profile
    from .separate import Centrifuge
    from .video import read_clip

    bundled = Centrifuge.from_pretrained()
    frames = torch.from_numpy(read_clip(videos / "bigbuckbunny.mp4", 40, 16))
    detail = {"bundled": fine_detail_shares(bundled, frames),
              "oracle": fine_detail_shares(Centrifuge(black_filter_oracle(), name="oracle", precision="fp32"), frames)}
    pairs = benchmark_pairs(",".join(str(videos / v) for v in HELD_BACK_VIDEOS), 8, 96, 112, seed=0)
    seams = [seam_profile(bundled, pairs, window, overlap) for window, overlap in ((32, 0), (32, 8), (64, 8))]
    return {"fine_detail_720p_over_black": detail, "seams": seams}


def format_separate(r: dict) -> str:
    lines = []
    for key in ("224p", "720p", "720p_veryfast", "720p_ultrafast"):
        if key not in r:  # figures saved before it was measured
            continue
        t = r[key]
        stages = ", ".join(f"{k} {v:.1f}" for k, v in sorted(t["ms_per_frame"].items()))
        files = f", layer files {t['layer_files_kib']:.0f} KiB" if "layer_files_kib" in t else ""
        lines.append(f"separate {key.replace('_', ', --encoder-preset ')} ({t['size'][1]}x{t['size'][0]}, {t['frames']} frames): "
                     f"{t['frames_per_second']:.1f} frames/s{files}; ms per frame: {stages}")
    m = r["1080p_memory"]
    w = r["work_per_output_frame"]
    lines += [f"720p frames/s = {100 * r['720p_over_224p']:.0f}% of 224p's",
              f"1080p: {m['frames']} frames at {m['frames_per_second']:.1f} frames/s, peak resident {m['peak_mib']:.0f} MiB",
              f"network frames per output frame (window {w['window']}, overlap {w['overlap']}): {w['64_frames']:.2f} for a 64-frame clip, "
              f"{w['long_video']:.2f} for a long video"]
    if "fine_detail_720p_over_black" in r:
        for name, d in r["fine_detail_720p_over_black"].items():
            lines.append(f"fine detail, 720p video over black, {name}: black layer {100 * d['black']:.0f}% of the blend's, "
                         f"video layer {100 * d['video']:.0f}% of its own")
        for s in r["seams"]:
            lines.append(f"seam, window {s['window']} overlap {s['overlap']}: loss near joins / elsewhere = {s['ratio']:.3f} "
                         f"({s['joins']} joins in {s['frames']} frames, work {s['work_per_frame']:.2f} per frame)")
    return "\n".join(lines)


def decode_frames_per_second(num_frames: int = 64, size: int = 64) -> float:
    """Training-style clip reads (seek + decode + resize) of a 640×360 H.264 file."""
    from .synthetic import synthetic_video
    from .video import probe, read_clip, write_video

    with tempfile.TemporaryDirectory() as tmp:
        path = write_video(Path(tmp) / "decode.mp4", synthetic_video(1, 160, 360, 640), fps=25)
        info = probe(path)
        starts = np.random.default_rng(0).integers(0, info.num_frames - num_frames, 6)
        started = time.perf_counter()
        for s in starts:
            read_clip(path, int(s), num_frames, info=info, shortest_side=round(size * 1.15))
        return len(starts) * num_frames / (time.perf_counter() - started)


def data_clips_per_second(device: str = "cpu", frames: int = 32, size: int = 112, clips: int = 16, quick: bool = False) -> dict:
    """Generated clips per second at ``frames``×``size``² from the per-clip generator (today's
    DataLoader path, one clip at a time) and from the batched generator, in the same process; on a
    GPU the batched one runs there too."""
    from .generator import BatchedGenerator, default_bank_size
    from .photos import available_photos, bank_tensor
    from .synthetic import synthetic_video

    if quick:
        frames, size, clips = 8, 32, 4
    photos = available_photos("train")
    bank = bank_tensor(photos, *default_bank_size(size))
    cpu = BatchedGenerator(bank, "cpu")
    # interleaved, best of three each: a shared host's load drifts over a run and would favour one
    per_clip, batched = (clips / t for t in _best_times_interleaved(
        [lambda: [synthetic_video(1000 + i, frames, size, size) for i in range(clips)],
         lambda: cpu.clips(range(1000, 1000 + clips), frames, size, size)], repeats=3))
    result = {"clip": [frames, size, size], "photos": len(photos), "threads": torch.get_num_threads(), "per_clip_clips_per_s": per_clip}
    result["batched_clips_per_s"] = batched
    result["batched_over_per_clip"] = batched / per_clip
    dev = resolve_device(device)
    if dev.type == "cuda":
        gpu = BatchedGenerator(bank, dev)
        batch = 64

        def on_gpu():
            gpu.clips(range(batch), frames, size, size)
            torch.cuda.synchronize()

        result["cuda_batched_clips_per_s"] = batch / _best_time(on_gpu, repeats=3)
    return result


def format_data(d: dict) -> str:
    text = (f"data, {'x'.join(map(str, d['clip']))} clips, {d['photos']} photographs, {d['threads']} threads: per-clip generator "
            f"{d['per_clip_clips_per_s']:.1f} clips/s, batched generator on the CPU {d['batched_clips_per_s']:.1f} clips/s "
            f"(x{d['batched_over_per_clip']:.2f})")
    if "cuda_batched_clips_per_s" in d:
        text += f", batched on CUDA {d['cuda_batched_clips_per_s']:.0f} clips/s"
    return text


def run(device: str = "auto", quick: bool = False) -> dict:
    """All figures as a dict (printed as a table by :func:`format_results`)."""
    dev = resolve_device(device)
    results: dict = {"device": str(dev), "torch": torch.__version__, "threads": torch.get_num_threads(),
                     "fast_bf16": cpu_has_fast_bf16() if dev.type == "cpu" else True}
    results["matmul_gflops"] = {"fp32": matmul_gflops(torch.float32, dev), "bf16": matmul_gflops(torch.bfloat16, dev)}

    flops = {}
    for name in (["tiny", "small"] if quick else MODEL_CONFIGS):
        model = build_model(name)
        clip = torch.rand(1, 3, 32, 112, 112)
        flops[name] = {"inference_gflop_32x112x112": count_flops(model.eval(), clip, False) / 1e9,
                       "training_gflop_32x112x112": count_flops(model.train(), clip, True) / 1e9}
    results["flops_per_clip"] = flops

    batch, frames, size = (2, 8, 32) if quick else (8, 16, 64)
    eager = training_clips_per_second("small", batch, frames, size, dev, optimised=False)
    fast = training_clips_per_second("small", batch, frames, size, dev, optimised=True)
    train_flops = count_flops(build_model("small").train(), torch.rand(1, 3, frames, size, size), True)
    results["training_small"] = {"batch": batch, "clip": [frames, size, size], "fp32_eager_clips_s": eager, "optimised_clips_s": fast,
                                 "speedup": fast / eager, "fp32_eager_gflops": eager * train_flops / 1e9,
                                 "optimised_gflops": fast * train_flops / 1e9, "peak_mib": peak_memory_mib()}

    frames, size = (16, 112) if quick else (64, 224)
    inference = {}
    from .separate import Centrifuge

    candidates = [("bundled default", Centrifuge.from_pretrained(device="cpu").net)]
    if not quick:
        candidates.append(("paper predictor, 4 layers", build_model("paper-predictor", num_layers=4)))
    for label, model in candidates:
        clip_flops = count_flops(model.eval(), torch.rand(1, 3, frames, size, size), False)
        seconds = inference_seconds(model, frames, size, dev, optimised=True)
        inference[label] = {"seconds_per_clip": seconds, "clip": [frames, size, size], "gflops": clip_flops / seconds / 1e9,
                            "fraction_of_best_matmul": clip_flops / seconds / 1e9 / max(results["matmul_gflops"].values())}
    results["inference"] = inference
    results["inference_peak_mib"] = peak_memory_mib()

    n = 32 if quick else 96
    results["separate_frames_per_second"] = {"224p": separate_frames_per_second(224, n, device),
                                             "720p": separate_frames_per_second(720, n // 2, device)}
    consumed = results["training_small"]["optimised_clips_s"] * 2 * results["training_small"]["clip"][0]
    decoded = decode_frames_per_second(results["training_small"]["clip"][0], results["training_small"]["clip"][1])
    results["decoding"] = {"frames_s": decoded, "training_consumes_frames_s": consumed, "ratio": decoded / consumed}
    results["peak_mib"] = peak_memory_mib()
    return results


def format_results(r: dict) -> str:
    lines = [f"device {r['device']}, torch {r['torch']}, {r['threads']} threads, fast bf16: {r['fast_bf16']}",
             f"matrix product: fp32 {r['matmul_gflops']['fp32']:.1f} GFLOP/s, bf16 {r['matmul_gflops']['bf16']:.1f} GFLOP/s", "",
             f"{'config':<18} {'inference GFLOP':>16} {'training GFLOP':>15}   (per 32x112x112 clip)"]
    for name, f in r["flops_per_clip"].items():
        lines.append(f"{name:<18} {f['inference_gflop_32x112x112']:16.1f} {f['training_gflop_32x112x112']:15.1f}")
    t = r["training_small"]
    lines += ["", f"training 'small', batch {t['batch']} of {'x'.join(map(str, t['clip']))}: fp32 eager {t['fp32_eager_clips_s']:.2f} clips/s "
              f"({t['fp32_eager_gflops']:.1f} GFLOP/s), optimised {t['optimised_clips_s']:.2f} clips/s ({t['optimised_gflops']:.1f} GFLOP/s), "
              f"x{t['speedup']:.2f}", ""]
    for label, i in r["inference"].items():
        lines.append(f"inference {label}: {i['seconds_per_clip']:.2f} s per {'x'.join(map(str, i['clip']))} clip, "
                     f"{i['gflops']:.1f} GFLOP/s ({100 * i['fraction_of_best_matmul']:.0f}% of the best matrix product)")
    s = r["separate_frames_per_second"]
    d = r["decoding"]
    lines += [f"separate end to end: {s['224p']:.1f} frames/s at 224p, {s['720p']:.1f} frames/s at 720p",
              f"decoding: {d['frames_s']:.0f} frames/s vs {d['training_consumes_frames_s']:.0f} consumed by training (x{d['ratio']:.1f})",
              f"peak resident memory: {r['peak_mib']:.0f} MiB"]
    return "\n".join(lines)


def train_step_figures(device: torch.device, quick: bool = False) -> list[dict]:
    """Clips/s of the trainer's whole optimised step (loss included) for the `small` model at the
    `cpu` preset's two crop sizes, batch 8 of 16 frames."""
    rows = []
    for size in ((32,) if quick else (64, 112)):
        clips_s = training_clips_per_second("small", 8, 16, size, device, optimised=True)
        rows.append({"batch": 8, "clip": [16, size, size], "clips_s": clips_s, "seconds_per_step": 8 / clips_s})
    return rows


def format_train_step(rows: list[dict]) -> str:
    return "\n".join(f"training step 'small', batch {r['batch']} of {'x'.join(map(str, r['clip']))}: {r['clips_s']:.2f} clips/s "
                     f"({r['seconds_per_step']:.2f} s per step, PIT loss included)" for r in rows)


def main(device: str = "auto", quick: bool = False, json_path: str | None = None, only: str | None = None) -> dict:
    if only == "data":
        results = {"device": str(resolve_device(device)), "torch": torch.__version__, "data": data_clips_per_second(device, quick=quick)}
        print(format_data(results["data"]))
    elif only == "train":
        results = {"device": str(resolve_device(device)), "torch": torch.__version__, "threads": torch.get_num_threads(),
                   "train_step": train_step_figures(resolve_device(device), quick)}
        print(format_train_step(results["train_step"]))
    elif only == "separate":
        results = {"device": str(resolve_device(device)), "torch": torch.__version__, "threads": torch.get_num_threads(),
                   "separate": separate_figures(device, quick)}
        print(format_separate(results["separate"]))
    else:
        results = run(device, quick)
        results["data"] = data_clips_per_second(device, quick=quick)
        print(format_results(results) + "\n" + format_data(results["data"]))
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2))
    return results


# --------------------------------------------------------------------------- levers, one at a time

# What each lever was predicted to do before it was measured (issue 6 asks for the prediction first).
PREDICTIONS = {
    "inference_mode": "~0-3%: no_grad already skips the graph; inference_mode only drops version counters",
    "channels_last_3d (fp32)": "small (±10%): oneDNN reorders NCDHW inputs internally anyway",
    "bf16 autocast": "2-3x: the bf16 matrix product is ~4x fp32 here, convolutions are not all matmul-bound",
    "BatchNorm folded": "5-15%: one elementwise pass over every activation fewer",
    "2 clips per batch": "~0-10% per clip: a 64x224x224 clip already fills both cores",
    "1 thread instead of 2": "~1.8-2x slower: the work parallelises well over the two cores",
    "torch.compile": "10-30% from fusing pads, ReLUs and concatenations; minutes of compile time",
}


def _timed_inference(model: torch.nn.Module, clip: torch.Tensor, amp: torch.dtype | None, mode: str, repeats: int = 2) -> float:
    context = torch.inference_mode if mode == "inference_mode" else torch.no_grad

    def run():
        with context(), torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            model(clip)

    return _best_time(run, repeats=repeats)


def inference_levers(frames: int = 64, size: int = 224, num_layers: int = 4, compile_model: bool = False) -> list[dict]:
    """The paper's base predictor (``num_layers`` outputs) on one ``frames×size×size`` clip, CPU,
    with the levers switched on one after another; each row keeps the previous rows' levers."""
    from .models import fold_batchnorm

    torch.manual_seed(0)
    base = build_model("paper-predictor", num_layers=num_layers).eval()
    clip = torch.rand(1, 3, frames, size, size)
    flops = count_flops(base, clip, False)
    bf16 = torch.bfloat16 if cpu_has_fast_bf16() else None
    cl = lambda t: t.contiguous(memory_format=torch.channels_last_3d)  # noqa: E731
    base_cl = base.to(memory_format=torch.channels_last_3d)
    folded = fold_batchnorm(base).to(memory_format=torch.channels_last_3d)
    ladder = [
        ("fp32 eager (no_grad)", lambda: _timed_inference(base, clip, None, "no_grad")),
        ("inference_mode", lambda: _timed_inference(base, clip, None, "inference_mode")),
        ("channels_last_3d (fp32)", lambda: _timed_inference(base_cl, cl(clip), None, "inference_mode")),
        ("bf16 autocast", lambda: _timed_inference(base_cl, cl(clip), bf16, "inference_mode")),
        ("BatchNorm folded", lambda: _timed_inference(folded, cl(clip), bf16, "inference_mode")),
        ("2 clips per batch", lambda: _timed_inference(folded, cl(clip.expand(2, -1, -1, -1, -1)), bf16, "inference_mode", 1) / 2),
    ]
    rows = []
    for name, measure in ladder:
        seconds = measure()
        rows.append({"lever": name, "seconds_per_clip": seconds, "gflops": flops / seconds / 1e9, "prediction": PREDICTIONS.get(name, "")})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seconds = _timed_inference(folded, cl(clip), bf16, "inference_mode", 1)
    finally:
        torch.set_num_threads(threads)
    rows.append({"lever": "1 thread instead of 2", "seconds_per_clip": seconds, "gflops": flops / seconds / 1e9,
                 "prediction": PREDICTIONS["1 thread instead of 2"], "not_kept": True})
    if compile_model:
        compiled = torch.compile(folded)
        started = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=bf16 or torch.float32, enabled=bf16 is not None):
            compiled(cl(clip))
        warmup = time.perf_counter() - started
        seconds = _timed_inference(compiled, cl(clip), bf16, "inference_mode", 2)
        rows.append({"lever": "torch.compile", "seconds_per_clip": seconds, "gflops": flops / seconds / 1e9,
                     "prediction": PREDICTIONS["torch.compile"], "compile_seconds": warmup})
    return rows


def concatenation_share(frames: int = 32, size: int = 224, num_layers: int = 4) -> float:
    """The share of CPU time the paper predictor spends in ``aten::cat`` (Inception and skip
    concatenations) at bf16 with channels_last_3d: the most a concatenation-free rewrite could save."""
    from torch.profiler import ProfilerActivity, profile

    model = build_model("paper-predictor", num_layers=num_layers).eval().to(memory_format=torch.channels_last_3d)
    clip = torch.rand(1, 3, frames, size, size).contiguous(memory_format=torch.channels_last_3d)
    amp = torch.bfloat16 if cpu_has_fast_bf16() else None
    _timed_inference(model, clip, amp, "inference_mode", 1)  # warm-up: oneDNN builds its kernels
    with profile(activities=[ProfilerActivity.CPU]) as prof, torch.inference_mode(), torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
        model(clip)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key == "aten::cat") / total


def training_levers(batch: int = 8, frames: int = 16, size: int = 64) -> list[dict]:
    """Training clips/s of the ``small`` model with precision and memory-layout levers, side by side."""
    rows = []
    for name, amp, channels_last in [("fp32 eager", None, False), ("channels_last_3d (fp32)", None, True),
                                     ("bf16 autocast (NCDHW)", torch.bfloat16, False), ("bf16 autocast + channels_last_3d", torch.bfloat16, True)]:
        if amp is not None and not cpu_has_fast_bf16():
            continue
        torch.manual_seed(0)
        model = build_model("small").train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        clip = torch.rand(batch, 3, frames, size, size)
        if channels_last:
            model, clip = model.to(memory_format=torch.channels_last_3d), clip.contiguous(memory_format=torch.channels_last_3d)

        def step():
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
                out = model(clip)
            out.float().abs().mean().backward()
            optimizer.step()

        rows.append({"lever": name, "clips_s": batch / _best_time(step, repeats=3)})
    for row in rows:
        row["speedup"] = row["clips_s"] / rows[0]["clips_s"]
    return rows


def format_levers(inference: list[dict], training: list[dict], cat_share: float | None) -> str:
    lines = [f"{'inference lever (cumulative)':<30}{'s/clip':>8}{'GFLOP/s':>9}{'vs prev':>9}  prediction"]
    previous = None
    for row in inference:
        change = "" if previous is None else f"x{previous / row['seconds_per_clip']:.2f}"
        lines.append(f"{row['lever']:<30}{row['seconds_per_clip']:8.2f}{row['gflops']:9.0f}{change:>9}  {row['prediction']}")
        if not row.get("not_kept"):
            previous = row["seconds_per_clip"]
    if cat_share is not None:
        lines.append(f"time in aten::cat (concatenations): {100 * cat_share:.1f}% of the bf16 forward")
    lines += ["", f"{'training lever (small, batch 8)':<34}{'clips/s':>8}{'vs fp32':>9}"]
    lines += [f"{row['lever']:<34}{row['clips_s']:8.1f}{'x%.2f' % row['speedup']:>9}" for row in training]
    return "\n".join(lines)


def levers_main(json_path: str | None = None, compile_model: bool = False, quick: bool = False) -> dict:
    frames, size = (8, 64) if quick else (64, 224)
    inference = inference_levers(frames, size, compile_model=compile_model)
    cat_share = concatenation_share(8 if quick else 32, 64 if quick else 224)
    training = training_levers(*((2, 8, 32) if quick else (8, 16, 64)))
    print(format_levers(inference, training, cat_share))
    results = {"inference_paper_predictor_4_layers": {"clip": [frames, size, size], "rows": inference},
               "concatenation_share": cat_share, "training_small": training, "threads": torch.get_num_threads()}
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2))
    return results


# --------------------------------------------------------------------------- memory against length

_MEASURE_SEPARATE = """
import resource, sys, time
from centrifuge.cli import main
started = time.perf_counter()
code = main(["separate", sys.argv[1], "-o", sys.argv[2], "--force", "--quiet"])
# VmHWM: this process's own peak (ru_maxrss would carry the parent's peak across exec on Linux).
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(code, time.perf_counter() - started, peak_kib / 1024)
"""


def separate_memory_by_length(minutes: tuple[float, ...] = (1, 10), fps: float = 10, height: int = 224) -> list[dict]:
    """Peak resident memory and seconds of ``centrifuge separate`` (a fresh process each) on inputs
    of each length; a 4-second generated clip is looped to the length, so only the length differs."""
    import subprocess
    import sys

    from .synthetic import synthetic_video
    from .video import VideoWriter

    width = (height * 16 // 9) // 2 * 2
    loop = synthetic_video(2, int(4 * fps), height, width)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for length in minutes:
            path = Path(tmp) / f"input_{length:g}min.mp4"
            frames = int(length * 60 * fps)
            with VideoWriter(path, fps=fps) as writer:
                for start in range(0, frames, len(loop)):
                    writer.write(loop[: frames - start])
            done = subprocess.run([sys.executable, "-c", _MEASURE_SEPARATE, str(path), str(Path(tmp) / "out")],
                                  capture_output=True, text=True, check=True)
            code, seconds, peak = done.stdout.split()[-3:]
            rows.append({"minutes": length, "frames": frames, "size": [height, width], "fps": fps, "exit_code": int(code),
                         "seconds": float(seconds), "frames_per_second": frames / float(seconds), "peak_mib": float(peak)})
    return rows


def format_memory(rows: list[dict]) -> str:
    lines = [f"{'input':<24}{'frames':>8}{'seconds':>9}{'frames/s':>10}{'peak MiB':>10}"]
    for r in rows:
        name = f"{r['minutes']:g} min {r['size'][1]}x{r['size'][0]} {r['fps']:g} fps"
        lines.append(f"{name:<24}{r['frames']:>8}{r['seconds']:>9.0f}{r['frames_per_second']:>10.1f}{r['peak_mib']:>10.0f}")
    return "\n".join(lines)
