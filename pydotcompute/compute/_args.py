"""Kernel arguments: what each one is, its Numba type, and how it is passed to PTX.

An argument is described by a small hashable key (kind, dtype, ndim, layout) so a launch
finds its compiled variant with one dictionary lookup; Numba types are built from the key
only when a variant is compiled.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import KernelArgumentError
from ._buffer import UnifiedBuffer

__all__ = ["arg_key", "check_abi", "is_device_array", "numba_type", "pack_args"]

_SCALARS = {bool: "|b1", int: "<i8", float: "<f8", complex: "<c16"}
_PTX_BYTES = {"8": 1, "16": 2, "32": 4, "64": 8}


def is_device_array(value: Any) -> bool:
    """True for a GPU array (CuPy, Numba device array, or anything with the CUDA interface)."""
    return hasattr(type(value), "__cuda_array_interface__") and not isinstance(value, UnifiedBuffer)


def _array_key(kind: str, dtype: np.dtype[Any], ndim: int, c_contig: bool, ro: bool) -> tuple:
    return (kind, dtype.str, ndim, "C" if c_contig else "A", ro)


def arg_key(kernel: str, name: str, value: Any) -> tuple:
    """The type key of one argument, or a clear error naming it."""
    if isinstance(value, UnifiedBuffer):
        dtype = value.dtype
        key = _array_key("buffer", dtype, value.ndim, True, False)
    elif isinstance(value, np.ndarray):
        dtype = value.dtype
        key = _array_key(
            "numpy", dtype, value.ndim, value.flags.c_contiguous, not value.flags.writeable
        )
    elif type(value) in _SCALARS:
        if type(value) is int and not -(2**63) <= value < 2**63:
            raise KernelArgumentError(
                f"{kernel}(): argument {name!r} = {value} does not fit in int64; pass a "
                "smaller int or a float"
            )
        return ("scalar", _SCALARS[type(value)])
    elif isinstance(value, np.generic) and value.dtype.kind in "biufc":
        return ("scalar", value.dtype.str)
    elif is_device_array(value):
        cai = value.__cuda_array_interface__
        dtype = np.dtype(cai["typestr"])
        strides = cai.get("strides")
        shape = tuple(cai["shape"])
        c_contig = strides is None or strides == _c_strides(shape, dtype.itemsize)
        key = _array_key("device", dtype, len(shape), c_contig, False)
    else:
        raise KernelArgumentError(
            f"{kernel}(): argument {name!r} is a {type(value).__name__}, which a kernel cannot "
            "take; pass a number, a NumPy or CuPy array, or a UnifiedBuffer (for a list, "
            "np.asarray(...) it first)"
        )
    if dtype.kind not in "biufc":
        raise KernelArgumentError(
            f"{kernel}(): argument {name!r} has dtype {dtype}; kernels take arrays of numbers "
            "or booleans"
        )
    return key


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides = []
    step = itemsize
    for dim in reversed(shape):
        strides.append(step)
        step *= max(dim, 1)
    return tuple(reversed(strides))


def numba_type(key: tuple) -> Any:
    """The Numba type of an argument key."""
    import numba

    if key[0] == "scalar":
        return numba.from_dtype(np.dtype(key[1]))
    _kind, dtype, ndim, layout, readonly = key
    return numba.types.Array(numba.from_dtype(np.dtype(dtype)), ndim, layout, readonly=readonly)


def pack_args(keys: tuple[tuple, ...], values: list[Any]) -> list[np.generic]:
    """Flatten arguments the way Numba's CUDA kernels take them (its data model for arrays).

    An array becomes ``meminfo, parent, nitems, itemsize, data, shape..., strides...``; a
    complex scalar its real and imaginary parts; a bool one byte.
    """
    out: list[np.generic] = []
    for key, value in zip(keys, values):
        if key[0] == "scalar":
            dtype = np.dtype(key[1])
            if dtype.kind == "c":
                part = np.float32 if dtype.itemsize == 8 else np.float64
                out += [part(value.real), part(value.imag)]
            elif dtype.kind == "b":
                out.append(np.uint8(bool(value)))
            else:
                out.append(dtype.type(value))
            continue
        cai = value.__cuda_array_interface__
        shape = tuple(cai["shape"])
        itemsize = np.dtype(cai["typestr"]).itemsize
        strides = cai.get("strides") or _c_strides(shape, itemsize)
        out += [np.uint64(0), np.uint64(0), np.int64(math.prod(shape)), np.int64(itemsize)]
        out.append(np.uint64(cai["data"][0]))
        out += [np.int64(d) for d in shape]
        out += [np.int64(s) for s in strides]
    return out


def check_abi(kernel: str, packed: list[np.generic], params: tuple[str, ...]) -> None:
    """Check packed arguments against the PTX entry's parameters (count and widths)."""
    widths = [_PTX_BYTES.get(p.lstrip("usfb"), 0) for p in params]
    sizes = [a.dtype.itemsize for a in packed]
    if sizes != widths:
        raise KernelArgumentError(
            f"{kernel}(): the arguments flatten to {len(sizes)} values of {sizes} bytes, but "
            f"the compiled kernel takes {len(widths)} of {widths} bytes ({', '.join(params)}); "
            "this is a bug in pydotcompute, please report it with the kernel's signature"
        )
