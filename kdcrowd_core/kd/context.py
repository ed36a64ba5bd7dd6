"""What every KD-Crowd stage shares: the answers on the device, the run context (events, cancellation,
progress), the classifier heads and the per-stage model selection on validation data."""
from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data import CrowdData
from ..models import EnsembleHead, build_classifier
from .config import KDConfig


class TrainingCancelled(RuntimeError):
    """Raised by :meth:`KDCrowd.fit` when the ``cancel`` event is set."""

# =============================================================== tensors on the device
@dataclass
class _Answers:
    """Answers sorted by item, on the device: ``item, worker, label`` (A,), ``ptr`` (N+1,), ``cnt`` (N,)."""

    item: torch.Tensor
    worker: torch.Tensor
    label: torch.Tensor
    ptr: torch.Tensor
    cnt: torch.Tensor
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_data(cls, data: CrowdData, dev: torch.device) -> _Answers:
        order = np.argsort(data.item, kind="stable")
        item = data.item[order]
        cnt = np.bincount(item, minlength=data.n_items)
        ptr = np.zeros(data.n_items + 1, dtype=np.int64)
        np.cumsum(cnt, out=ptr[1:])
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(dev)
        return cls(t(item), t(data.worker[order]), t(data.label[order]), t(ptr), t(cnt))

    def of_items(self, idx: torch.Tensor):
        """Answers of the items ``idx`` (B,): ``(a_local (A_b,), worker, label)``, ``a_local`` indexes ``idx``."""
        c = self.cnt[idx]
        starts = self.ptr[idx]
        local = torch.repeat_interleave(torch.arange(idx.shape[0], device=idx.device), c)
        first = torch.cumsum(c, 0) - c
        a = starts[local] + (torch.arange(local.shape[0], device=idx.device) - first[local])
        return local, self.worker[a], self.label[a]

    def key(self, K: int) -> torch.Tensor:
        """Each answer's ``worker * K + label`` (A,): its row in a model's log-likelihood table (cached)."""
        if ("key", K) not in self._cache:
            self._cache[("key", K)] = self.worker * K + self.label
        return self._cache[("key", K)]

    def by_key(self, R: int, K: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The answers' items ordered by key and the start of each of the ``R * K`` keys in that order (cached;
        AggNet's M-step sums the posteriors of each key's items with one ``embedding_bag``)."""
        if ("by_key", R, K) not in self._cache:
            key = self.key(K)
            order = torch.argsort(key, stable=True)
            starts = torch.zeros(R * K, dtype=torch.long, device=key.device)
            starts[1:] = torch.cumsum(torch.bincount(key, minlength=R * K), 0)[:-1]
            self._cache[("by_key", R, K)] = (self.item.index_select(0, order), starts)
        return self._cache[("by_key", R, K)]

    def subset(self, idx: torch.Tensor, N: int) -> _Answers:
        """The answers of the items ``idx`` (ascending), renumbered ``0 .. len(idx) - 1`` in that order."""
        local_of = torch.full((N,), -1, dtype=torch.long, device=idx.device)
        local_of[idx] = torch.arange(idx.shape[0], device=idx.device)
        loc = local_of[self.item]
        keep = loc >= 0
        item = loc[keep]
        cnt = self.cnt.index_select(0, idx)
        ptr = torch.zeros(idx.shape[0] + 1, dtype=torch.long, device=idx.device)
        ptr[1:] = torch.cumsum(cnt, 0)
        return _Answers(item, self.worker[keep], self.label[keep], ptr, cnt)


def _own_runnable_threads() -> int:
    """Threads of this process that are runnable now (Linux ``/proc/self/task``; 1 where unknown)."""
    n = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for t in tasks:
        try:
            with open(f"/proc/self/task/{t}/stat") as f:
                st = f.read()
        except OSError:
            continue
        if st[st.rindex(")") + 2:st.rindex(")") + 3] == "R":
            n += 1
    return max(n, 1)


def idle_cores(limit: int) -> int:
    """Threads (or jobs side by side) to use now: :func:`~kdcrowd_core.inference.threads.steady_threads`
    (the cores nobody else runs on, at most ``limit``), not counting this process's own runnable threads as
    competing load: torch's OpenMP workers keep spinning for a moment after a multi-threaded op and showed up
    as "another job" in ``/proc/loadavg``, which made the 100k run train its first job group one at a time on
    an idle machine."""
    from ..inference.threads import steady_threads
    got = steady_threads(limit)
    if got >= limit:
        return got
    return max(1, min(int(limit), got + _own_runnable_threads() - 1))


def _auto_batch(n: int, batch_size: int) -> int:
    if batch_size and batch_size > 0:
        return int(batch_size)
    return int(min(4096, max(64, n // 16)))


def _to_t(x, dev, dtype=torch.float32):
    return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype).to(dev)


# =============================================================== the run context
class _Run:
    """Events, cancellation, clocks and progress bookkeeping of one fit."""

    def __init__(self, callback, cancel, total_epochs: int):
        self.callback = callback
        self.cancel = cancel
        self.t0 = time.perf_counter()
        self.total = max(1, int(total_epochs))
        self.done = 0
        self.round = 1          # the trainer's round (rounds > 1), in every event
        self.history: list[dict] = []
        self.dp = None          # kd/distributed.py DataParallel: loss averaged, generator synced per event
        self._lock = threading.RLock()   # jobs side by side (kd/jobs.py) report from their own threads
        self._halted = False

    def check(self):
        if self.cancel is not None and self.cancel.is_set():
            raise TrainingCancelled("training cancelled")
        if self._halted:
            raise TrainingCancelled("stopped: another training job failed")

    def halt(self) -> None:
        """Make every :meth:`check` raise (a job side by side failed; kd/jobs.py)."""
        self._halted = True

    def resume(self) -> None:
        self._halted = False

    def skip(self, n: int) -> None:
        """Count ``n`` epochs that will not run (a stage stopped early) as done."""
        with self._lock:
            self.done += int(n)

    def event(self, stage: str, epoch: int, n_epochs: int, loss: float | None, train_acc=None, valid_acc=None,
              message: str = "", count: bool = True, round_: int | None = None):
        with self._lock:
            if count:
                self.done += 1
            if self.dp is not None:
                loss = self.dp.epoch_end(loss)
            ev = {"stage": stage, "epoch": int(epoch), "n_epochs": int(n_epochs),
                  "loss": None if loss is None else float(loss),
                  "train_accuracy": None if train_acc is None else float(train_acc),
                  "valid_accuracy": None if valid_acc is None else float(valid_acc),
                  "elapsed": time.perf_counter() - self.t0,
                  "stage_progress": float(epoch / n_epochs) if n_epochs else 1.0,
                  "overall_progress": min(1.0, self.done / self.total) if stage != "done" else 1.0,
                  "message": message, "round": int(self.round if round_ is None else round_)}
            self.history.append(ev)
            if self.callback is not None:
                self.callback(ev)
        self.check()


@dataclass
class _Ctx:
    """What every stage needs: features, answers, gold, validation data, config."""

    X: torch.Tensor
    ans: _Answers
    K: int
    R: int
    cfg: KDConfig
    dev: torch.device
    gold: torch.Tensor | None = None            # (N,) -1 unknown, for train accuracy
    Xv: torch.Tensor | None = None
    yv: torch.Tensor | None = None
    run: _Run | None = None
    gen: torch.Generator | None = None
    dp: object | None = None                    # kd/distributed.py DataParallel: this rank's share of each epoch
    max_threads: int = 0                        # > 0: each stage uses this many CPU threads at most (steady_threads)
    _feature_stats: tuple | None = field(default=None, repr=False)   # the items' (mean, std): fit_standardizer

    def pick_threads(self) -> None:
        """At the start of a stage on the CPU (``num_threads = 0``): torch's threads capped at the cores idle
        right now (:func:`~kdcrowd_core.inference.threads.steady_threads`).  Multi-threaded ops wait for their
        slowest thread: on this 2-core machine with other jobs running, a 4096 x 128 elementwise product took
        25 ms on 2 threads and 0.3 ms on 1."""
        if self.max_threads > 0 and self.dev.type == "cpu" and self.dp is None:
            torch.set_num_threads(idle_cores(self.max_threads))

    def batch_size(self, n: int) -> int:
        """Mini-batch size for ``n`` training items (this rank's share of it under data parallelism)."""
        B = _auto_batch(n, self.cfg.batch_size)
        return B if self.dp is None else self.dp.local_batch(B)

    @property
    def N(self) -> int:
        return int(self.X.shape[0])

    def fit_standardizer(self, head) -> None:
        """``head.fit_standardizer(X)`` with the items' mean and std computed once per fit (every head of a run
        is fitted on the same items; 100k x 128 features took 80 ms per head)."""
        stats = self._feature_stats
        if stats is None:
            from ..models.heads import Standardizer
            st = Standardizer(self.X.shape[1]).to(self.X.device).fit(self.X)
            stats = self._feature_stats = (st.mean, st.std)
        head.standardizer.mean.copy_(stats[0])
        head.standardizer.std.copy_(stats[1])

    def autocast(self):
        if self.cfg.amp and self.dev.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def perm(self, idx: torch.Tensor) -> torch.Tensor:
        p = torch.randperm(idx.shape[0], generator=self.gen).to(idx.device)
        return idx[p] if self.dp is None else self.dp.shard(idx[p])


# =============================================================== helpers on models
@torch.no_grad()
def _logits(model: torch.nn.Module, X: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    was = model.training
    model.eval()
    out = torch.cat([model(X[s:s + chunk]).float() for s in range(0, X.shape[0], chunk)]) if X.shape[0] else \
        torch.zeros(0, getattr(model, "n_classes", 1), device=X.device)
    model.train(was)
    return out


@torch.no_grad()
def _accuracy(model, X, y) -> float | None:
    if X is None or y is None:
        return None
    m = y >= 0
    if not bool(m.any()):
        return None
    pred = _logits(model, X[m]).argmax(1)
    return float((pred == y[m]).float().mean())


def _state(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _make_head(cfg: KDConfig, d: int, K: int, student: bool = False, ensemble: bool = True):
    """A classifier head; the student is an :class:`EnsembleHead` of ``student_ensemble`` heads when > 1
    (``ensemble=False``: one member)."""
    kw = dict(hidden=cfg.hidden, depth=cfg.depth, dropout=cfg.dropout, norm=cfg.norm)
    if student:
        kw.update(feature_noise=cfg.student_feature_noise, input_dropout=cfg.student_input_dropout)
        if ensemble and cfg.student_ensemble > 1:
            return EnsembleHead([build_classifier(cfg.classifier, d, K, **kw) for _ in range(cfg.student_ensemble)])
    return build_classifier(cfg.classifier, d, K, **kw)

def make_optimizer(cfg: KDConfig, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """The stages' optimiser (``cfg.optimizer``: adam, adamw or radam) over ``params`` (tensors or groups).

    Adam and AdamW use torch's fused kernel (one op per step for all parameters instead of about ten per
    tensor; the same update): on this project's CPU a 4096-item step of the default head took about 8 %
    less time, a 64-item step about 10 % less."""
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "radam": torch.optim.RAdam}[cfg.optimizer]
    params = list(params)
    tensors = [t for g in params for t in (g["params"] if isinstance(g, dict) else [g])]
    if cfg.optimizer in ("adam", "adamw") and tensors and all(t.device.type in ("cpu", "cuda") for t in tensors):
        return cls(params, lr=lr, weight_decay=weight_decay, fused=True)
    return cls(params, lr=lr, weight_decay=weight_decay)


def make_schedule(cfg: KDConfig, opt: torch.optim.Optimizer, epochs: int, cosine: bool = False):
    """Per-epoch learning-rate schedule: cosine annealing to 0 over ``epochs`` when ``cfg.schedule`` (or
    ``cosine``) says so, else None (constant)."""
    if cfg.schedule == "cosine" or cosine:
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, int(epochs)))
    return None


# =============================================================== stage trainers
class _Selector:
    """Keeps the state with the best validation accuracy (or the last one without validation).

    With ``average_last = k > 0`` the stage instead ends with the uniform average of the weights of its
    last ``k`` epochs (no epoch is picked; validation accuracy is still reported and drives ``patience``)."""

    def __init__(self, ctx: _Ctx, model: torch.nn.Module, clf: torch.nn.Module, epochs: int = 0):
        self.ctx, self.model, self.clf = ctx, model, clf
        self.best = -1.0
        self.best_state = None
        self.best_epoch = 0
        self.since = 0
        self.epochs = epochs
        self.k = int(ctx.cfg.average_last)
        self.avg: dict | None = None
        self.n_avg = 0

    def step(self, epoch: int) -> tuple[float | None, bool]:
        if self.k > 0 and epoch > self.epochs - self.k:
            st = self.model.state_dict()
            if self.avg is None:
                self.avg = {n: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
                            for n, v in st.items()}
            else:
                for n, v in st.items():
                    if v.is_floating_point():
                        self.avg[n].add_(v.detach().float())
                    else:
                        self.avg[n] = v.detach().clone()
            self.n_avg += 1
        va = _accuracy(self.clf, self.ctx.Xv, self.ctx.yv)
        if va is None:
            return None, False
        if va > self.best:
            self.best, self.best_state, self.best_epoch, self.since = va, _state(self.model), epoch, 0
        else:
            self.since += 1
        stop = self.ctx.cfg.patience > 0 and self.since >= self.ctx.cfg.patience
        return va, stop

    def finish(self):
        if self.avg is not None:
            ref = self.model.state_dict()
            self.model.load_state_dict({n: (v / self.n_avg).to(ref[n].dtype) if v.is_floating_point() else v
                                        for n, v in self.avg.items()})
            self.best = _accuracy(self.clf, self.ctx.Xv, self.ctx.yv)
            self.best = -1.0 if self.best is None else self.best
        elif self.best_state is not None:
            self.model.load_state_dict(self.best_state)

def _acc_np(p: np.ndarray, y: np.ndarray | None) -> float | None:
    if y is None:
        return None
    m = y >= 0
    if not m.any():
        return None
    return float((np.asarray(p)[m].argmax(1) == y[m]).mean())
