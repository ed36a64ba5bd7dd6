"""torch.distributed set-up for data-parallel runs launched by ``torchrun`` (or Ray / Spark, which start
the same processes with the same environment variables).

``init_distributed`` joins the process group described by the environment (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``; ``LOCAL_RANK`` picks the GPU): NCCL when the device is a CUDA GPU,
gloo on CPU.  Every collective is bounded by ``timeout_s``; a rank that dies makes the others fail
their next collective, which :func:`peer_lost_message` turns into one clear line.
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch

from .errors import CrowdDataError


class PeerLost(RuntimeError):
    """Another rank stopped (killed, crashed or timed out) while this one waited for it."""


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init_distributed(device: str = "auto", timeout_s: float = 600.0) -> torch.device:
    """Join the default process group (once) and return this rank's device."""
    import torch.distributed as dist
    if not (launched_by_torchrun() or (dist.is_available() and dist.is_initialized())):
        raise CrowdDataError("--distributed needs the process group environment that torchrun sets "
                             "(RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).",
                             hint="start it as: torchrun --nproc-per-node N -m kdcrowd_core aggregate ... "
                                  "--distributed (see docs/scaling.md).")
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda") or device.startswith("cuda:")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        dev = torch.device(f"cuda:{local % max(torch.cuda.device_count(), 1)}")
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(seconds=float(timeout_s)))
    return dev


def finish_distributed() -> None:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_peer_failure(exc: BaseException) -> bool:
    """True for the errors a collective raises when another rank is gone or too slow."""
    import torch.distributed as dist
    kinds = tuple(k for k in (getattr(dist, "DistError", None), getattr(dist, "DistBackendError", None),
                              getattr(dist, "DistNetworkError", None)) if k is not None)
    if kinds and isinstance(exc, kinds):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(w in text for w in (
        "connection closed by peer", "connection reset", "timed out", "timeout", "gloo", "nccl", "broken pipe",
        "socket"))


def peer_lost_message(exc: BaseException, phase: str) -> str:
    rank, world = os.environ.get("RANK", "?"), os.environ.get("WORLD_SIZE", "?")
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return (f"rank {rank} of {world}: another rank stopped or stopped answering during {phase} "
            f"({first}); this rank stops too. Look for the first failing rank's message above, fix it and "
            "rerun (torchrun --max-restarts N restarts the whole job).")
