"""A second device for CPU-only machines, to catch tensors left on the CPU beside GPU ones.

Inside :class:`OtherDevice` every tensor moved to (or created on) the ``meta`` device becomes a
:class:`Elsewhere` tensor: it reports ``device='meta'`` but holds real CPU values, so code runs to
the end and returns real numbers. Any operation that mixes an ``Elsewhere`` tensor with an ordinary
CPU tensor of one or more dimensions raises ``RuntimeError("Expected all tensors to be on the same
device ...")``, as CUDA does (0-dimensional CPU tensors may mix, as on CUDA). ``.cpu()``/``.to("cpu")``
and ``.item()`` give ordinary values back. Autocast does not know the meta device: the code under
test must not enter ``torch.autocast`` when bf16 is off.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

DEVICE = torch.device("meta")
_MOVES = {torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default}


class Elsewhere(torch.Tensor):
    @staticmethod
    def __new__(cls, elem: torch.Tensor):
        r = torch.Tensor._make_wrapper_subclass(
            cls,
            elem.shape,
            strides=elem.stride(),
            storage_offset=elem.storage_offset(),
            dtype=elem.dtype,
            device=DEVICE,
            requires_grad=elem.requires_grad,
        )
        r.elem = elem
        return r

    def __repr__(self):
        return f"Elsewhere({self.elem!r})"

    def tolist(self):  # works on CUDA tensors too (.numpy() does not, and is not offered here)
        return self.elem.tolist()

    def numpy(self, *a, **k):
        raise TypeError(
            "can't convert meta device type tensor to numpy. Use Tensor.cpu() to copy the tensor to host memory first."
        )

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _dispatch(func, args, kwargs or {})


def _dispatch(func, args, kwargs):
    away, here = [], []

    def scan(x):
        if isinstance(x, Elsewhere):
            away.append(x)
        elif isinstance(x, torch.Tensor):
            here.append(x)
        return x

    tree_map(scan, (args, kwargs))
    dev = kwargs.get("device")
    to_away = dev is not None and torch.device(dev).type == DEVICE.type
    to_cpu = dev is not None and torch.device(dev).type == "cpu"
    if away and func not in _MOVES and any(t.dim() > 0 for t in here):
        shapes = [tuple(t.shape) for t in here if t.dim() > 0]
        raise RuntimeError(
            f"Expected all tensors to be on the same device, but found at least two devices, "
            f"meta and cpu! ({func}, cpu tensors of shapes {shapes})"
        )
    unwrap = lambda x: x.elem if isinstance(x, Elsewhere) else x  # noqa: E731
    a, k = tree_map(unwrap, args), tree_map(unwrap, kwargs)
    if to_away:
        k["device"] = torch.device("cpu")
    out = func(*a, **k)
    if func is torch.ops.aten._local_scalar_dense.default:
        return out
    if func is torch.ops.aten.copy_.default:  # in place: the destination keeps its device
        return args[0]
    wrap = (bool(away) and not to_cpu) or to_away
    return tree_map(lambda x: Elsewhere(x) if wrap and isinstance(x, torch.Tensor) else x, out)


class _Dispatch(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return _dispatch(func, args, kwargs or {})


class _Factories(TorchFunctionMode):
    """``torch.tensor(data, device='meta')`` and ``torch.as_tensor``: built on the CPU, then moved."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        dev = kwargs.get("device")
        if func in (torch.tensor, torch.as_tensor) and dev is not None and torch.device(dev).type == DEVICE.type:
            kwargs = {k: v for k, v in kwargs.items() if k != "device"}
            return func(*args, **kwargs).to(DEVICE)
        return func(*args, **kwargs)


class OtherDevice:
    """``with OtherDevice(): ...``: ``.to('meta')`` and ``device='meta'`` give real-valued tensors
    on a second device; mixing them with CPU tensors raises as CUDA does."""

    def __enter__(self):
        self._f, self._d = _Factories(), _Dispatch()
        self._f.__enter__()
        self._d.__enter__()
        return self

    def __exit__(self, *exc):
        self._d.__exit__(*exc)
        self._f.__exit__(*exc)
        return False
