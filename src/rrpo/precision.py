"""Where bf16 autocast pays: a device that computes bf16 natively.

CUDA GPUs with bf16 support and CPUs with AVX512-BF16 or AMX run bf16 matrix work natively; other
CPUs (AVX2 only, for example) emulate it, and there bf16 autocast is slower than fp32 (measured on a
2-core AVX2 EPYC: a 2-layer d=128 Transformer's forward + backward took 1.67 s in bf16 against
0.40 s in fp32). ``bf16_autocast(device, True)`` therefore autocasts only where bf16 is native and
runs fp32 elsewhere, saying so once in the log. This module imports nothing from rrpo.
"""

from __future__ import annotations

import functools
import logging
import re

import torch

log = logging.getLogger(__name__)

_CPU_BF16_FLAGS = re.compile(r"\b(avx512_bf16|amx_bf16)\b")


def cpu_flags_have_bf16(cpuinfo: str) -> bool:
    """True when a ``/proc/cpuinfo`` text names a native bf16 instruction set (AVX512-BF16 or AMX)."""
    return bool(_CPU_BF16_FLAGS.search(cpuinfo))


@functools.cache
def cpu_has_native_bf16() -> bool:
    """This CPU's answer (Linux: from /proc/cpuinfo; elsewhere False, so fp32 is used)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return cpu_flags_have_bf16(f.read())
    except OSError:
        return False


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return True


_warned: set[str] = set()


def use_bf16(device: torch.device, requested: bool) -> bool:
    """``requested`` and native on ``device``; logs once per device type when a request is dropped."""
    if not requested:
        return False
    if native_bf16(device):
        return True
    if device.type not in _warned:
        _warned.add(device.type)
        log.info("bf16 autocast requested, but this %s has no native bf16: running fp32 (faster here)", device.type)
    return False


def bf16_autocast(device: torch.device, enabled: bool):
    """``torch.autocast`` to bf16 on ``device`` when ``enabled`` and native there; fp32 otherwise."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16(device, enabled))
