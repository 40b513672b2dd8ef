"""bf16 autocast only where bf16 is native (rrpo.precision)."""

import torch

from rrpo import precision


def test_cpu_flags_name_native_bf16():
    """AVX2-only flags: no; avx512_bf16 or amx_bf16 as whole words: yes; a longer word is not a flag."""
    assert not precision.cpu_flags_have_bf16("flags\t: fpu sse2 avx avx2 fma")
    assert precision.cpu_flags_have_bf16("flags\t: avx2 avx512f avx512_bf16 avx512_vnni")
    assert precision.cpu_flags_have_bf16("flags\t: amx_bf16 amx_tile amx_int8")
    assert not precision.cpu_flags_have_bf16("flags\t: xavx512_bf16y")


def _dtype_under(enabled, native, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    a = torch.ones(2, 2)
    with precision.bf16_autocast(torch.device("cpu"), enabled):
        return (a @ a).dtype


def test_autocast_only_where_requested_and_native(monkeypatch):
    assert _dtype_under(True, True, monkeypatch) == torch.bfloat16
    assert _dtype_under(True, False, monkeypatch) == torch.float32
    assert _dtype_under(False, True, monkeypatch) == torch.float32
    assert _dtype_under(False, False, monkeypatch) == torch.float32
