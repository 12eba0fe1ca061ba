"""What the ring kernel runtime shows of the devices in its snapshots."""

from __future__ import annotations

from typing import Any

from ._accelerator import Accelerator, simulating

__all__ = ["device_snapshot"]


def device_snapshot() -> dict[str, Any]:
    """Telemetry of the accelerator in use, as plain data, for ``RuntimeSnapshot.device``.

    The first GPU accelerator this process has opened, else the CPU. It never opens a GPU
    itself, so a runtime that used no GPU feature does not import CuPy or Numba here.
    """
    opened = [
        a
        for a in list(Accelerator._instances.values())
        if a.is_gpu and (simulating() or not a.simulated)
    ]
    acc = min(opened, key=lambda a: a.index) if opened else Accelerator("cpu")
    return acc.telemetry().as_dict()
