"""Data-parallel training of the teacher, the student and stage 2 over torch.distributed (``--distributed``).

Every rank runs the same pipeline on the same data (read in full by each rank); what is split is the
mini-batch training, as ``DistributedDataParallel`` with a ``DistributedSampler`` would split it:

- each epoch's shuffled item order (the same on every rank: one seed, one generator) is padded to a
  multiple of the number of ranks and dealt out, rank ``r`` taking positions ``r, r + N, ...``
  (:meth:`DataParallel.shard`), so each rank trains on its own 1/N of the items per epoch;
- a rank's mini-batch is ``ceil(B / N)`` items, so the global batch stays ``B`` and an epoch has the
  same number of optimizer steps as on one process (:meth:`DataParallel.local_batch`);
- before every optimizer step the gradients are averaged over the ranks with one ``all_reduce``
  (a global optimizer step pre-hook, installed only for the fit), and at an optimizer's first step
  its parameters are broadcast from rank 0, as DDP does at construction: the ranks hold the same
  weights throughout, so the full-data passes (posteriors, validation, selection, early stopping)
  give the same result on every rank;
- at every progress event (once per epoch) the reported loss is averaged over the ranks and the
  shared generator's state is broadcast from rank 0, so per-rank randomness inside an epoch
  (mixup, noise) never desynchronises the next epoch's order or the cross-fit folds.

Only rank 0 writes the run directory (``kdcrowd train --distributed``).  Backends: gloo on CPU, NCCL
on CUDA (``kdcrowd_core.parallel.init_distributed``).  A rank that dies makes the others fail their
next collective within ``--timeout`` seconds; the CLI turns that into one line and exit status 3.
"""
from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Iterator

import torch


class DataParallel:
    """Hooks of one data-parallel fit (the process group must be initialised)."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        import torch.distributed as dist
        self._dist = dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.device = torch.device(device)
        self.gen: torch.Generator | None = None
        self.steps = 0                # optimizer steps synchronised
        self.items_trained = 0        # items this rank trained on, summed over epochs (its shares)
        self.items_total = 0          # the same on all ranks together (the epochs' item counts)
        self.weights_digest = ""      # of the fitted classifiers: the same on every rank
        self.bytes_reduced = 0        # gradient all-reduce payload per rank
        self.comm_s = 0.0             # seconds in the gradient all-reduces (waiting for the slowest rank included)
        self._seen: weakref.WeakSet = weakref.WeakSet()

    # ------------------------------------------------------------ partition
    def shard(self, perm: torch.Tensor) -> torch.Tensor:
        """This rank's items of an epoch order: padded (by wrapping) to a multiple of the ranks, every
        ``world``-th item from position ``rank``; the same length on every rank."""
        n = perm.shape[0]
        self.items_total += n
        if n == 0 or self.world == 1:
            self.items_trained += n
            return perm
        total = -(-n // self.world) * self.world
        if total > n:  # wrap around, as DistributedSampler pads
            perm = perm[torch.arange(total, device=perm.device) % n]
        mine = perm[self.rank::self.world]
        self.items_trained += mine.shape[0]
        return mine

    def local_batch(self, batch: int) -> int:
        return max(1, -(-int(batch) // self.world))

    # ------------------------------------------------------------ gradients
    def _pre_step(self, opt: torch.optim.Optimizer, args, kwargs) -> None:
        params = [p for g in opt.param_groups for p in g["params"]]
        if not params:
            return
        if opt not in self._seen:  # same starting weights everywhere, as DDP's constructor does
            self._seen.add(opt)
            with torch.no_grad():
                flat = torch.cat([p.detach().reshape(-1).to(self.device) for p in params])
                self._dist.broadcast(flat, 0)
                self._unflatten(flat, params, lambda p, v: p.copy_(v))
        has = [p.grad is not None for p in params]
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(self.device)
                          for p in params] + [torch.tensor(has, dtype=params[0].dtype, device=self.device)])
        t0 = time.perf_counter()
        self._dist.all_reduce(flat)
        self.comm_s += time.perf_counter() - t0
        self.bytes_reduced += flat.numel() * flat.element_size()
        self.steps += 1
        flags = flat[-len(params):]
        flat = flat[:-len(params)] / self.world
        off = 0
        for p, f in zip(params, flags.tolist()):
            n = p.numel()
            if f > 0:
                g = flat[off:off + n].view_as(p).to(p.device)
                if p.grad is None:
                    p.grad = g.clone()
                else:
                    p.grad.copy_(g)
            off += n

    @staticmethod
    def _unflatten(flat: torch.Tensor, params, put) -> None:
        off = 0
        for p in params:
            n = p.numel()
            put(p, flat[off:off + n].view_as(p).to(p.device))
            off += n

    # --------------------------------------------------------------- epochs
    def epoch_end(self, loss: float | None) -> float | None:
        """Average the epoch's loss over the ranks and give every rank rank 0's generator state."""
        t = torch.tensor([0.0 if loss is None else float(loss), 0.0 if loss is None else 1.0],
                         dtype=torch.float64, device=self.device)
        self._dist.all_reduce(t)
        if self.gen is not None:
            state = self.gen.get_state().to(self.device)
            self._dist.broadcast(state, 0)
            self.gen.set_state(state.cpu())
        return None if loss is None else float(t[0] / max(float(t[1]), 1.0))

    @contextlib.contextmanager
    def active(self) -> Iterator[DataParallel]:
        """Install the gradient hook on every optimizer stepped inside the block."""
        from torch.optim.optimizer import register_optimizer_step_pre_hook
        handle = register_optimizer_step_pre_hook(self._pre_step)
        try:
            yield self
        finally:
            handle.remove()


def weights_digest(model_states: dict) -> str:
    """A short hash of the fitted classifiers' weights (ranks that agree print the same one)."""
    import hashlib
    h = hashlib.sha256()
    for name in sorted(model_states):
        for key in sorted(model_states[name]):
            h.update(f"{name}.{key}".encode())
            h.update(model_states[name][key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def check_config(cfg) -> None:
    """Settings whose per-rank state would make the ranks disagree (raise CrowdDataError)."""
    from ..errors import CrowdDataError
    if cfg.norm == "batch":
        raise CrowdDataError("--distributed training does not support batch normalisation (norm='batch'): each "
                             "rank's running statistics would differ and the ranks would select different "
                             "epochs.", hint="use norm 'layer' or 'none' with --distributed.")
