"""Device and precision choices, made from what the machine really has."""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Iterator

import torch


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU. ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but PyTorch sees no CUDA GPU (is the CUDA build of torch installed?)")
    return resolved


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


@functools.lru_cache(maxsize=1)
def cpu_has_avx512() -> bool:
    return "avx512f" in _cpu_flags()


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU multiplies bf16 matrices in hardware (AMX or AVX512-BF16).

    Without them PyTorch emulates bf16 convolutions and they run tens of times slower than fp32
    (measured on an AVX2-only AMD EPYC: 0.9 vs 64 GFLOP/s for a matrix product), so bf16
    autocast on such a CPU would be a large slow-down, not a speed-up.
    """
    flags = _cpu_flags()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` (``auto``, ``fp32`` or ``bf16``) on ``device``; None for fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise ValueError(f"precision must be auto, fp32 or bf16, not {precision!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_has_fast_bf16() else None


def use_channels_last(device: torch.device, dtype: torch.dtype | None) -> bool:
    """channels_last_3d pays off on CUDA, with oneDNN's bf16 kernels, and for fp32 training on an
    AVX-512 CPU (measured ×1.5 for the ``small`` model: ``centrifuge bench --levers``); with fp32 on
    an AVX2 CPU PyTorch's 3D convolutions gained little from it."""
    return device.type == "cuda" or dtype == torch.bfloat16 or (device.type == "cpu" and cpu_has_avx512())


def usable_cores() -> int:
    """The cores this process may run on (its affinity, where the OS says)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` inside the block (None: left as they are)."""
    before = torch.get_num_threads()
    if count is None or count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
