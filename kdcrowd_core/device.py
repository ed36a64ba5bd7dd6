"""Choosing the torch device once: cuda, then mps, then cpu, overridable."""
from __future__ import annotations

import torch

from .errors import CrowdDataError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return the device to compute on.

    ``"auto"``/``None`` picks cuda, then mps, then cpu.  Anything else is
    passed to :class:`torch.device`; asking for cuda where none exists is an
    error with a clear message rather than a crash deep inside torch.
    """
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CrowdDataError("device 'cuda' was requested but no CUDA GPU is available.",
                             hint="use device='auto' or 'cpu'.")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise CrowdDataError("device 'mps' was requested but MPS is not available.",
                                 hint="use device='auto' or 'cpu'.")
    return dev


def describe_device(device: torch.device) -> str:
    """Human-readable device name, e.g. 'cuda (NVIDIA H100 80GB HBM3)'."""
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda ({torch.cuda.get_device_name(idx)})"
    return device.type
