"""The KD-Crowd trainer: teacher crowd model -> robust student -> stage 2.

See docs/kd.md for the method as implemented, every setting and the
measurements behind the defaults.  In short:

0. **Truth inference without features**: soft majority vote and Dawid-Skene.
1. **Teacher**: a crowd model (classifier + per-worker noise model, registered in
   :mod:`kdcrowd_core.models`) trained on the answers (masked crowd NLL, or EM for
   AggNet).  Its prediction of each item's true label (``teacher_target``:
   ``"posterior"`` = ``p(x_i) * prod T_r[:, c]`` or ``"classifier"`` = ``p(x_i)``)
   is the student's target.  With ``cross_fit_folds = k > 1`` the targets are
   *out of fold*: item ``i``'s target comes from a teacher trained on the other
   ``k - 1`` folds (the full-data teacher is still trained and reported).
2. **Student**: a fresh classifier trained on the (detached) targets with the
   distillation loss ``distill`` (MIG^f or KL/CE) and the robust technique ``robust``.
3. **Stage 2**: the crowd model retrained (warm-started from the teacher or
   fresh) on ``crowd NLL + stage2_lambda * CE(p(x_i), s_i)`` with the student's
   predictions ``s_i``; its classifier, posteriors and worker matrices are final.

Everything runs on one torch device (``cuda``, then ``mps``, then ``cpu``;
``device`` overrides), with mini-batches of items whose answers are gathered
from an item-sorted answer list (no items x workers array, no Python loop per
item).  Progress events go to a callback; a ``threading.Event`` cancels.
"""
from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .data import CrowdData
from .device import describe_device, resolve_device
from .errors import CrowdDataError
from . import losses as L
from .models import EnsembleHead, Head, build_classifier, build_crowd_model, available_crowd_models
from .models.crowd import CrowdModel

#: Registered teacher names (crowd models), default first.
TEACHERS: list[str] = ["aggnet"] + [t for t in available_crowd_models() if t != "aggnet"]
#: Distillation losses of the student.
DISTILL_LOSSES: list[str] = ["mig-kl", "mig-pearson", "mig-hellinger", "kl", "ce"]
#: Noise-model-free robust techniques of the student.
ROBUST_METHODS: list[str] = ["auto", "small-loss", "none", "gce", "co-teaching", "elr", "consistency",
                             "agreement"]
#: Candidates ``robust="auto"`` chooses between on the validation data (the first when there is none).
AUTO_ROBUST_CANDIDATES: tuple[str, ...] = ("none", "small-loss")
#: Stages in order (progress events' ``stage``).
STAGES: tuple[str, ...] = ("mv", "ds", "teacher", "student", "stage2", "done")
METHODS: tuple[str, ...] = ("mv", "ds", "teacher", "student", "stage2")
MODELS: tuple[str, ...] = ("teacher", "student", "stage2")


class TrainingCancelled(RuntimeError):
    """Raised by :meth:`KDCrowd.fit` when the ``cancel`` event is set."""


# =============================================================== configuration
@dataclass
class KDConfig:
    """Every setting of a KD-Crowd run (JSON round trip: :meth:`to_dict` / :meth:`from_dict`).

    Teacher
    -------
    teacher : str
        Crowd model: ``"aggnet"`` (EM with closed-form worker matrices), ``"prob-transition"``
        (DS-initialised per-worker matrices), ``"crowdlayer-mw"``, ``"crowdlayer-vw"``,
        ``"crowdlayer-vb"``, ``"crowdlayer-vw+b"``, ``"conal"``.
    teacher_target : str
        ``"posterior"`` (classifier times the worker matrices of the item's answers) or
        ``"classifier"`` (the teacher's classifier alone).
    cross_fit_folds : int
        ``k > 1``: out-of-fold teacher targets from ``k`` extra teachers (each trained
        without one fold); ``0`` or ``1``: the full teacher's in-sample targets.
    trace_lambda : float
        Trace regulariser weight of ``prob-transition`` (``lambda * mean_r trace(T_r)``).
    conal_beta : float
        CoNAL's ``beta`` (penalty ``-beta sum_r ||W_r - W_c||``).
    aggnet_alpha : float
        Smoothing of AggNet's closed-form worker matrices.
    ds_alpha : float
        Smoothing of the Dawid-Skene run that initialises the teacher.
    use_gold : bool
        Use the data's gold labels for training (DS clamps them; teacher targets are
        clamped to them).  Default False: gold only measures accuracy.

    Student
    -------
    soft_targets : bool
        Train on the teacher's probabilities (True) or on its argmax labels (False).
    distill : str
        ``"mig-kl" | "mig-pearson" | "mig-hellinger"`` (MIG^f), ``"kl"`` (Hinton, with
        ``temperature``) or ``"ce"`` (cross-entropy to the targets).
    temperature : float
        Temperature of ``"kl"``.
    robust : str
        ``"auto"`` (train one student per technique in ``AUTO_ROBUST_CANDIDATES`` = none, small-loss
        and keep the one with the best validation accuracy; ``"none"`` when no validation data is
        given), ``"none"``, ``"small-loss"`` (keep the items with the smallest CE to the target's
        argmax; the distillation loss is computed on the kept items only) or ``"gce"``
        (generalized cross-entropy replaces CE/KL; with MIG^f it is added to it) or ``"co-teaching"``
        (two students, each trained on the small-loss items of the other, same forget-rate schedule as
        small-loss; the first one is kept) or ``"elr"`` (early-learning regularisation: the distillation
        loss plus ``elr_lambda * log(1 - <p_i, t_i>)`` with ``t_i`` a running average, weight ``elr_beta``,
        of the student's own predictions on item i; no item is dropped) or ``"consistency"`` (the
        ``forget_rate`` share of items whose target is least confident is treated as unlabeled: no
        distillation loss, only a consistency loss, weight ``consistency_weight``, between the student's
        predictions on two noised copies (Gaussian, std ``consistency_noise``) of every item) or
        ``"agreement"`` (each item's distillation loss is weighted by how many of its answers agree with the
        target's argmax, ``(agree + 1) / (answers + 2)``, normalised to mean 1; MIG^f weights its joint term).
    forget_rate : float or None
        Final fraction forgotten by ``"small-loss"``; ``None`` = share of items where the
        targets' argmax disagrees with majority vote.
    forget_ramp_epochs : int
        Epochs over which the forget rate ramps up from 0 (Co-teaching schedule).
    consistency_weight, consistency_noise : float
        Weight of the consistency loss (mean squared difference of the two noised copies' probabilities,
        summed over classes) and the noise std (standardised features) of ``"consistency"``.
    elr_beta, elr_lambda : float
        Running-average weight and strength of ``"elr"`` (the paper's CIFAR-10 values: 0.7 and 3).
    gce_q : float
        ``q`` of GCE.
    mig_marginal : str
        Marginal pairs of MIG^f: ``"batch"`` (the ``B (B - 1)`` off-diagonal pairs of the mini-batch,
        as in Max-MIG) or ``"all"`` (each batch item against the targets of every training item).
    mig_temperature : float
        MIG^f targets are sharpened (``< 1``) or softened (``> 1``): ``q ∝ q^(1 / T)``.
    student_ensemble : int
        Number of students (different initialisations and batch orders) whose probabilities are
        averaged into the student classifier (an :class:`~kdcrowd_core.models.heads.EnsembleHead`).
    student_feature_noise, student_input_dropout : float
        "Noised student": Gaussian noise (std, on standardised features) and dropout on the
        student's inputs during training.
    student_mixup : float
        Mixup in the student: ``alpha`` of the ``Beta(alpha, alpha)`` mixing weight (``lam`` is
        folded to ``max(lam, 1 - lam)``); inputs and targets of each mini-batch are mixed with a
        permutation of the batch.  ``0`` = off.
    student_schedule : str
        Student learning-rate schedule: ``"constant"`` or ``"cosine"`` (cosine annealing to 0 over
        ``epochs_student``).
    student_weight_decay : float or None
        Adam weight decay of the student; ``None`` = ``weight_decay``.

    Rounds
    ------
    rounds : int
        Stage-1/stage-2 rounds.  In round ``r > 1`` the previous stage-2 crowd model is the teacher:
        new out-of-fold targets come from crowd models trained (like stage 2, with the previous
        student's predictions, weight ``stage2_lambda``) on the other folds, then a new student and
        a new stage 2 (warm-started from the previous stage 2).  ``1`` = the plain pipeline; default 2
        (chosen on validation accuracy, docs/kd.md).

    Stage 2
    -------
    stage2_lambda : float
        Weight of ``CE(p(x_i), s_i)`` next to the crowd NLL.
    stage2_warm_start : bool
        Start from the teacher (True) or from a fresh crowd model (False).

    Optimisation and model
    ----------------------
    epochs_teacher, epochs_student, epochs_stage2 : int
    lr : float
        Adam learning rate of the classifiers.
    lr_transition : float
        Adam learning rate of the worker (noise-model) parameters.
    weight_decay : float
    batch_size : int
        Items per mini-batch; ``0`` = automatic (``clip(N // 16, 64, 4096)``).
    classifier : str
        Head: ``"mlp"`` or ``"linear"``.
    hidden, depth, dropout, norm :
        MLP width, hidden layers, dropout, normalisation (``"none" | "batch" | "layer"``).
    patience : int
        With validation data: stop a stage after this many epochs without a better
        validation accuracy (0 = never stop early; the best epoch is kept either way).
    average_last : int
        ``0`` (default): every stage keeps its epoch with the best validation accuracy.  ``k > 0``: every
        stage ends with the uniform average of the weights of its last ``k`` epochs (weight averaging,
        no epoch picked on validation).
    seed : int
        Seeds every random source (deterministic on CPU).
    device : str
        ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    amp : bool
        bfloat16 autocast on CUDA (ignored elsewhere).
    num_threads : int
        ``torch.set_num_threads`` during ``fit`` on CPU (0 = leave torch's setting).
    """

    teacher: str = "aggnet"
    teacher_target: str = "posterior"
    cross_fit_folds: int = 5
    trace_lambda: float = 0.0
    conal_beta: float = 1e-5
    aggnet_alpha: float = 0.01
    ds_alpha: float = 0.01
    use_gold: bool = False
    soft_targets: bool = True
    distill: str = "mig-kl"
    temperature: float = 1.0
    robust: str = "auto"
    forget_rate: float | None = None
    forget_ramp_epochs: int = 10
    gce_q: float = 0.7
    elr_beta: float = 0.7
    elr_lambda: float = 3.0
    consistency_weight: float = 1.0
    consistency_noise: float = 0.3
    mig_marginal: str = "batch"
    mig_temperature: float = 1.0
    student_ensemble: int = 1
    student_feature_noise: float = 0.0
    student_input_dropout: float = 0.0
    student_mixup: float = 0.0
    student_schedule: str = "constant"
    student_weight_decay: float | None = None
    rounds: int = 2
    stage2_lambda: float = 1.0
    stage2_warm_start: bool = True
    epochs_teacher: int = 50
    epochs_student: int = 50
    epochs_stage2: int = 30
    lr: float = 1e-3
    lr_transition: float = 1e-2
    weight_decay: float = 0.0
    batch_size: int = 0
    classifier: str = "mlp"
    hidden: int = 128
    depth: int = 1
    dropout: float = 0.5
    norm: str = "none"
    patience: int = 0
    average_last: int = 0
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    num_threads: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> KDConfig:
        d = dict(d or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise CrowdDataError(f"unknown KD-Crowd settings {unknown}.", hint=f"valid settings: {sorted(names)}.")
        return cls(**d).validate()

    def validate(self) -> KDConfig:
        """Check every choice; raise CrowdDataError naming the bad setting."""
        def bad(name, msg):
            raise CrowdDataError(f"setting {name}={getattr(self, name)!r}: {msg}")
        t = str(self.teacher).strip().lower().replace("_", "-")
        if t not in TEACHERS:
            bad("teacher", f"choose one of {TEACHERS}.")
        self.teacher = t
        if self.teacher_target not in ("posterior", "classifier"):
            bad("teacher_target", "choose 'posterior' or 'classifier'.")
        if self.distill not in DISTILL_LOSSES:
            bad("distill", f"choose one of {DISTILL_LOSSES}.")
        if self.robust not in ROBUST_METHODS:
            bad("robust", f"choose one of {ROBUST_METHODS}.")
        if self.classifier not in ("mlp", "linear"):
            bad("classifier", "choose 'mlp' or 'linear'.")
        if self.norm not in ("none", "batch", "layer"):
            bad("norm", "choose 'none', 'batch' or 'layer'.")
        for n in ("epochs_teacher", "epochs_student", "epochs_stage2"):
            if int(getattr(self, n)) < 0:
                bad(n, "must be >= 0.")
        if self.epochs_teacher < 1:
            bad("epochs_teacher", "the teacher needs at least one epoch.")
        if self.cross_fit_folds < 0:
            bad("cross_fit_folds", "must be >= 0.")
        if self.batch_size < 0:
            bad("batch_size", "must be >= 0 (0 = automatic).")
        if not (self.lr > 0 and self.lr_transition > 0):
            bad("lr", "learning rates must be > 0.")
        if self.forget_rate is not None and not 0.0 <= float(self.forget_rate) < 1.0:
            bad("forget_rate", "must lie in [0, 1) or be None (automatic).")
        if self.mig_marginal not in ("batch", "all"):
            bad("mig_marginal", "choose 'batch' or 'all'.")
        if self.mig_temperature <= 0:
            bad("mig_temperature", "must be > 0.")
        if int(self.student_ensemble) < 1:
            bad("student_ensemble", "must be >= 1.")
        if not (isinstance(self.student_mixup, (int, float)) and 0.0 <= float(self.student_mixup) <= 100.0):
            bad("student_mixup", "must be a number in [0, 100] (0 = no mixup).")
        if self.student_schedule not in ("constant", "cosine"):
            bad("student_schedule", "choose 'constant' or 'cosine'.")
        if self.student_weight_decay is not None and not float(self.student_weight_decay) >= 0.0:
            bad("student_weight_decay", "must be >= 0 or None (= weight_decay).")
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            bad("rounds", "must be an integer >= 1.")
        if not 0 < self.gce_q <= 1:
            bad("gce_q", "must lie in (0, 1].")
        if not 0 <= self.elr_beta < 1:
            bad("elr_beta", "must lie in [0, 1).")
        if not self.elr_lambda >= 0:
            bad("elr_lambda", "must be >= 0.")
        if not self.consistency_weight >= 0:
            bad("consistency_weight", "must be >= 0.")
        if not self.consistency_noise >= 0:
            bad("consistency_noise", "must be >= 0.")
        if self.temperature <= 0:
            bad("temperature", "must be > 0.")
        if not 0 <= self.dropout < 1:
            bad("dropout", "must lie in [0, 1).")
        if self.hidden < 1:
            bad("hidden", "must be >= 1.")
        if isinstance(self.average_last, bool) or not isinstance(self.average_last, int) or self.average_last < 0:
            bad("average_last", "must be an integer >= 0 (0 = keep the best epoch).")
        return self


# =============================================================== tensors on the device
@dataclass
class _Answers:
    """Answers sorted by item, on the device: ``item, worker, label`` (A,), ``ptr`` (N+1,), ``cnt`` (N,)."""

    item: torch.Tensor
    worker: torch.Tensor
    label: torch.Tensor
    ptr: torch.Tensor
    cnt: torch.Tensor

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
        self.history: list[dict] = []

    def check(self):
        if self.cancel is not None and self.cancel.is_set():
            raise TrainingCancelled("training cancelled")

    def event(self, stage: str, epoch: int, n_epochs: int, loss: float | None, train_acc=None, valid_acc=None,
              message: str = "", count: bool = True):
        if count:
            self.done += 1
        ev = {"stage": stage, "epoch": int(epoch), "n_epochs": int(n_epochs),
              "loss": None if loss is None else float(loss),
              "train_accuracy": None if train_acc is None else float(train_acc),
              "valid_accuracy": None if valid_acc is None else float(valid_acc),
              "elapsed": time.perf_counter() - self.t0,
              "stage_progress": float(epoch / n_epochs) if n_epochs else 1.0,
              "overall_progress": min(1.0, self.done / self.total) if stage != "done" else 1.0,
              "message": message}
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

    @property
    def N(self) -> int:
        return int(self.X.shape[0])

    def autocast(self):
        if self.cfg.amp and self.dev.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        import contextlib
        return contextlib.nullcontext()

    def perm(self, idx: torch.Tensor) -> torch.Tensor:
        p = torch.randperm(idx.shape[0], generator=self.gen).to(idx.device)
        return idx[p]


# =============================================================== helpers on models
@torch.no_grad()
def _logits(model: torch.nn.Module, X: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
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


@torch.no_grad()
def crowd_posterior(model: CrowdModel, X: torch.Tensor, ans: _Answers, items: torch.Tensor | None = None,
                    target: str = "posterior", chunk: int = 65536) -> torch.Tensor:
    """Teacher's true-label probabilities for ``items`` (default all): (n, K).

    ``"posterior"``: ``q_i ∝ p(x_i) prod_{(i, r, c)} P(c | y = j, r, x_i)`` in log space;
    ``"classifier"``: ``p(x_i)``.
    """
    was = model.training
    model.eval()
    if items is None:
        items = torch.arange(X.shape[0], device=X.device)
    outs = []
    for s in range(0, items.shape[0], chunk):
        idx = items[s:s + chunk]
        xb = X[idx]
        logp = F.log_softmax(model(xb).float(), dim=1)
        if target == "posterior":
            a_local, a_w, a_l = ans.of_items(idx)
            emb = model.item_embedding(xb) if model.needs_item_embedding else None
            ll = model.answer_log_lik(a_w, a_l, None if emb is None else emb[a_local]).float()
            logp = logp.index_add(0, a_local, ll)
        outs.append(F.softmax(logp, dim=1))
    model.train(was)
    return torch.cat(outs) if outs else torch.zeros(0, model.n_classes, device=X.device)


@torch.no_grad()
def effective_worker_matrices(model: CrowdModel, X: torch.Tensor, ans: _Answers, chunk: int = 65536) -> torch.Tensor:
    """Worker matrices (R, K, K); for CoNAL with each worker's mean gate over its answers."""
    was = model.training
    model.eval()
    gate = None
    if model.needs_item_embedding:
        R = model.n_workers
        gsum = torch.zeros(R, device=X.device)
        for s in range(0, ans.item.shape[0], chunk * 4):
            it, w = ans.item[s:s + chunk * 4], ans.worker[s:s + chunk * 4]
            emb = model.item_embedding(X[it])
            gsum.index_add_(0, w, model.gate(emb, w).float())
        n = torch.bincount(ans.worker, minlength=R).clamp_min(1)
        gate = gsum / n
    T = model.worker_matrices(gate).float()
    model.train(was)
    return T


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


def train_crowd_model(ctx: _Ctx, model: CrowdModel, train_idx: torch.Tensor, epochs: int, stage: str,
                      student_probs: torch.Tensor | None = None, lam: float = 0.0, label: str = "",
                      init_q: torch.Tensor | None = None, select: bool = True) -> CrowdModel:
    """Train a crowd model on the answers of ``train_idx`` (masked crowd NLL; EM for AggNet).

    ``student_probs`` (N, K) and ``lam`` add ``lam * CE(p(x_i), s_i)`` (stage 2).
    ``init_q`` (N, K): AggNet's posteriors for the first epoch (default: its E-step).
    """
    cfg = ctx.cfg
    B = _auto_batch(train_idx.shape[0], cfg.batch_size)
    groups = [{"params": list(model.classifier.parameters()), "lr": cfg.lr}]
    tp = model.transition_parameters()
    if tp:
        groups.append({"params": tp, "lr": cfg.lr_transition})
    opt = torch.optim.Adam(groups, weight_decay=cfg.weight_decay)
    sel = _Selector(ctx, model, model.classifier, epochs) if select else None
    q = None
    if model.em:
        t_ans = _answers_subset(ctx.ans, train_idx, ctx.N)
    for ep in range(1, epochs + 1):
        model.train()
        if model.em:
            if ep == 1 and init_q is not None:
                q = init_q
            else:
                q = crowd_posterior(model, ctx.X, ctx.ans, target="posterior")
            if student_probs is not None and lam > 0:
                # stage 2: the E-step's prior mixes the classifier with the student's predictions
                q = q * (student_probs + 1e-6) ** min(lam, 1.0)
                q = q / q.sum(1, keepdim=True)
            model.m_step(q, t_ans.item, t_ans.worker, t_ans.label)
        perm = ctx.perm(train_idx)
        tot, nb = 0.0, 0
        for s in range(0, perm.shape[0], B):
            ctx.run.check()
            idx = perm[s:s + B]
            xb = ctx.X[idx]
            with ctx.autocast():
                logits = model(xb)
                if model.em:
                    loss = L.soft_cross_entropy(logits, q[idx])
                else:
                    a_local, a_w, a_l = ctx.ans.of_items(idx)
                    probs = F.softmax(logits.float(), dim=1)
                    emb = model.item_embedding(xb) if model.needs_item_embedding else None
                    lp = model.answer_log_probs(probs, a_local, a_w, emb)
                    loss = L.crowd_nll(lp.float(), a_l) + model.penalty()
                if student_probs is not None and lam > 0:
                    loss = loss + lam * L.soft_cross_entropy(logits, student_probs[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach())
            nb += 1
        va, stop = sel.step(ep) if sel is not None else (None, False)
        ta = _accuracy(model.classifier, ctx.X, ctx.gold) if ctx.gold is not None else None
        ctx.run.event(stage, ep, epochs, tot / max(nb, 1), ta, va, message=label)
        if stop:
            ctx.run.done += epochs - ep
            break
    if sel is not None:
        sel.finish()
    if model.em:  # final E/M so that the matrices match the returned classifier
        q = crowd_posterior(model, ctx.X, ctx.ans, target="posterior")
        if student_probs is not None and lam > 0:
            q = q * (student_probs + 1e-6) ** min(lam, 1.0)
            q = q / q.sum(1, keepdim=True)
        model.m_step(q, t_ans.item, t_ans.worker, t_ans.label)
    model.eval()
    return model


def _answers_subset(ans: _Answers, idx: torch.Tensor, N: int) -> _Answers:
    mask = torch.zeros(N, dtype=torch.bool, device=idx.device)
    mask[idx] = True
    keep = mask[ans.item]
    item = ans.item[keep]
    cnt = torch.bincount(item, minlength=N)
    ptr = torch.zeros(N + 1, dtype=torch.long, device=idx.device)
    ptr[1:] = torch.cumsum(cnt, 0)
    return _Answers(item, ans.worker[keep], ans.label[keep], ptr, cnt)


def _agreement_weights(ctx: _Ctx, targets: torch.Tensor, train_idx: torch.Tensor) -> torch.Tensor:
    """Per item (N,): ``(answers agreeing with argmax target + 1) / (answers + 2)``, mean 1 over ``train_idx``."""
    ans = ctx.ans
    hit = (ans.label == targets.argmax(1)[ans.item]).to(targets.dtype)
    agree = torch.zeros(targets.shape[0], dtype=targets.dtype, device=targets.device).index_add_(0, ans.item, hit)
    w = (agree + 1.0) / (ans.cnt.to(targets.dtype) + 2.0)
    return w / w[train_idx].mean().clamp_min(1e-12)


def train_student(ctx: _Ctx, head: Head, targets: torch.Tensor, train_idx: torch.Tensor, epochs: int,
                  stage: str = "student", distill: str | None = None, robust: str | None = None,
                  forget_rate: float = 0.0, prior: torch.Tensor | None = None, select: bool = True,
                  label: str = "", peer: Head | None = None) -> Head:
    """Train a classifier on per-item targets (N, K) with a distillation loss and a robust technique.

    ``robust="co-teaching"`` needs ``peer`` (a second head, trained alongside): each head is trained on the
    small-loss items selected by the other one (Co-teaching); ``head`` is returned (selected on validation)."""
    cfg = ctx.cfg
    distill = distill or cfg.distill
    robust = robust or cfg.robust
    B = _auto_batch(train_idx.shape[0], cfg.batch_size)
    if not cfg.soft_targets:
        targets = F.one_hot(targets.argmax(1), targets.shape[1]).float()
    hard = targets.argmax(1)
    if distill.startswith("mig") and cfg.mig_temperature != 1.0:
        targets = F.softmax(torch.log(targets.clamp_min(1e-12)) / cfg.mig_temperature, dim=1)
        prior = None
    if prior is None:
        prior = targets[train_idx].mean(0)
    prior = prior.clamp_min(1e-6)
    marg_all = distill.startswith("mig") and cfg.mig_marginal == "all"
    if marg_all:   # each item's row in the marginal set (the training items' targets)
        row_of = torch.full((targets.shape[0],), -1, dtype=torch.long, device=targets.device)
        row_of[train_idx] = torch.arange(train_idx.shape[0], device=targets.device)
        marg_targets = targets[train_idx]
    wd = cfg.weight_decay if cfg.student_weight_decay is None else cfg.student_weight_decay
    coteach = robust == "co-teaching"
    if coteach and peer is None:
        raise ValueError("robust='co-teaching' needs a peer head")
    params = list(head.parameters()) + (list(peer.parameters()) if coteach else [])
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=wd)

    agree_w = _agreement_weights(ctx, targets, train_idx) if robust == "agreement" else None

    def dloss(lg, t, rows, w=None):
        if distill.startswith("mig"):
            out = L.mig_loss(F.softmax(lg, 1), t, prior, f=distill.split("-", 1)[1],
                             marginal_teacher=marg_targets if marg_all else None, self_index=rows, weight=w)
            return out + L.gce_loss(lg, t, q=cfg.gce_q) if robust == "gce" else out
        if robust == "gce":
            return L.gce_loss(lg, t, q=cfg.gce_q)
        if distill == "kl":
            per = L.kl_distillation(lg, t, temperature=cfg.temperature, reduction="none")
        else:
            per = L.soft_cross_entropy(lg, t, reduction="none")
        return per.mean() if w is None else (w * per).sum() / w.sum().clamp_min(1e-12)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs)) \
        if cfg.student_schedule == "cosine" else None
    mix = float(cfg.student_mixup)
    beta = torch.distributions.Beta(torch.tensor(mix), torch.tensor(mix)) if mix > 0 else None
    sel = _Selector(ctx, head, head, epochs) if select else None
    elr = torch.zeros_like(targets) if robust == "elr" else None   # ELR's running targets, one row per item
    confident = None
    if robust == "consistency":   # the forget_rate share of least confident targets counts as unlabeled
        conf = targets.max(1).values
        confident = conf >= torch.quantile(conf[train_idx].float(), min(forget_rate, 1.0)) if forget_rate > 0 \
            else torch.ones_like(conf, dtype=torch.bool)
    for ep in range(1, epochs + 1):
        head.train()
        keep = 1.0 - (L.forget_schedule(ep, forget_rate, cfg.forget_ramp_epochs)
                      if robust in ("small-loss", "co-teaching") else 0.0)
        if coteach:
            peer.train()
        perm = ctx.perm(train_idx)
        tot, nb = 0.0, 0
        for s in range(0, perm.shape[0], B):
            ctx.run.check()
            idx = perm[s:s + B]
            if idx.shape[0] < 2 and distill.startswith("mig") and not marg_all:
                continue
            xb, t = ctx.X[idx], targets[idx]
            if beta is not None:   # mixup: inputs and targets mixed with a permutation of the batch
                lm = float(beta.sample())
                lm = max(lm, 1.0 - lm)
                j = torch.randperm(idx.shape[0], generator=ctx.gen).to(idx.device)
                xb = lm * xb + (1.0 - lm) * xb[j]
                t = lm * t + (1.0 - lm) * t[j]
            with ctx.autocast():
                logits = head(xb).float()
            rows = row_of[idx] if marg_all else None

            def hard_ce(lg):  # called within this iteration only
                ce = F.cross_entropy(lg, hard[idx], reduction="none")  # noqa: B023
                if beta is not None:
                    ce = lm * ce + (1.0 - lm) * F.cross_entropy(lg, hard[idx][j], reduction="none")  # noqa: B023
                return ce
            if coteach:   # each head learns from the items its peer finds clean
                with ctx.autocast():
                    logits_p = peer(xb).float()
                m_self, m_peer = L.small_loss_mask(hard_ce(logits), keep), L.small_loss_mask(hard_ce(logits_p), keep)
                sub = lambda r, m: None if r is None else r[m]
                loss = dloss(logits[m_peer], t[m_peer], sub(rows, m_peer)) + \
                    dloss(logits_p[m_self], t[m_self], sub(rows, m_self))
            else:
                if robust == "small-loss" and keep < 1.0:
                    m = L.small_loss_mask(hard_ce(logits), keep)
                    logits, t = logits[m], t[m]
                    rows = rows[m] if rows is not None else None
                if confident is not None:   # unlabeled items: consistency between two noised copies only
                    m = confident[idx]
                    loss = dloss(logits[m], t[m], rows[m] if rows is not None else None) if int(m.sum()) >= 2 \
                        else logits.sum() * 0.0
                    noise = cfg.consistency_noise * head.standardizer.std
                    with ctx.autocast():
                        pa, pb = (F.softmax(head(xb + noise * torch.randn(xb.shape, generator=ctx.gen,
                                                                            device=xb.device)).float(), 1)
                                  for _ in range(2))
                    loss = loss + cfg.consistency_weight * ((pa - pb) ** 2).sum(1).mean()
                else:
                    loss = dloss(logits, t, rows, agree_w[idx] if agree_w is not None else None)
                if elr is not None:
                    p = F.softmax(logits, 1)
                    elr[idx] = L.elr_update(elr[idx], p, cfg.elr_beta)
                    loss = loss + cfg.elr_lambda * L.elr_regulariser(p, elr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach())
            nb += 1
        if sched is not None:
            sched.step()
        va, stop = sel.step(ep) if sel is not None else (None, False)
        ta = _accuracy(head, ctx.X, ctx.gold) if ctx.gold is not None else None
        ctx.run.event(stage, ep, epochs, tot / max(nb, 1), ta, va, message=label)
        if stop:
            ctx.run.done += epochs - ep
            break
    if sel is not None:
        sel.finish()
    head.eval()
    return head


# =============================================================== results
def _plain_list(idx: pd.Index) -> list:
    return [v.item() if hasattr(v, "item") else v for v in pd.Index(idx).tolist()]


@dataclass
class KDResult:
    """Everything a KD-Crowd run produced (see docs/kd.md for every field).

    Attributes
    ----------
    classes, item_ids, worker_ids : pandas.Index
    config : KDConfig
    device : str, e.g. ``"cpu"`` or ``"cuda (NVIDIA H100)"``
    probas : dict method -> (N, K) float64, methods ``mv, ds, teacher, student, stage2``
        (``teacher``/``stage2``: per ``teacher_target``; ``student``: the student classifier).
    worker_matrices : dict ``ds, teacher, stage2`` -> (R, K, K) ``[r, true j, answer c]``
    targets : (N, K) the student's training targets (out-of-fold when ``cross_fit_folds > 1``)
    history : list of progress events; timings : seconds per stage (and ``total``)
    train_accuracy : accuracy on the items with gold, per method (empty without gold)
    test_accuracy : accuracy of the teacher/student/stage2 classifiers on the test items (when labelled)
    valid_accuracy : best validation accuracy per trained model (when validation data was given)
    test_probas : model -> (n_test, K); test_ids : pandas.Index or None
    forget_rate : the forget rate the student used (0 unless it used small-loss)
    robust : the robust technique the student used (what ``"auto"`` chose)
    """

    classes: pd.Index
    item_ids: pd.Index
    worker_ids: pd.Index
    config: KDConfig
    device: str
    probas: dict[str, np.ndarray]
    worker_matrices: dict[str, np.ndarray]
    history: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    train_accuracy: dict[str, float] = field(default_factory=dict)
    test_accuracy: dict[str, float] = field(default_factory=dict)
    valid_accuracy: dict[str, float] = field(default_factory=dict)
    test_probas: dict[str, np.ndarray] = field(default_factory=dict)
    test_ids: pd.Index | None = None
    targets: np.ndarray | None = None
    forget_rate: float = 0.0
    robust: str = ""
    model_states: dict[str, dict] = field(default_factory=dict, repr=False)
    n_features: int = 0

    def labels_frame(self) -> pd.DataFrame:
        """Per item (index = item id): ``mv, ds, teacher, student, stage2`` — the predicted label
        name of each method — then ``<method>_confidence`` (its max probability)."""
        cols: dict[str, Any] = {}
        present = [m for m in METHODS if m in self.probas]
        for m in present:
            cols[m] = self.classes.take(self.probas[m].argmax(1))
        for m in present:
            cols[f"{m}_confidence"] = self.probas[m].max(1)
        return pd.DataFrame(cols, index=pd.Index(self.item_ids, name="item"))

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable: settings, device, sizes, timings, accuracies."""
        return {"config": self.config.to_dict(), "device": self.device,
                "n_items": len(self.item_ids), "n_workers": len(self.worker_ids), "n_classes": len(self.classes),
                "timings": {k: float(v) for k, v in self.timings.items()},
                "train_accuracy": dict(self.train_accuracy), "test_accuracy": dict(self.test_accuracy),
                "valid_accuracy": dict(self.valid_accuracy), "forget_rate": float(self.forget_rate),
                "robust": self.robust}

    # ------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``result.json`` (ids, config, accuracies, history), ``arrays.npz`` and ``models.pt``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = self.summary()
        meta.update({"classes": _plain_list(self.classes), "item_ids": _plain_list(self.item_ids),
                     "worker_ids": _plain_list(self.worker_ids),
                     "test_ids": None if self.test_ids is None else _plain_list(self.test_ids),
                     "history": self.history, "n_features": int(self.n_features), "format": 1})
        (d / "result.json").write_text(json.dumps(meta, default=_json_default))
        arrays = {f"proba_{k}": v for k, v in self.probas.items()}
        arrays.update({f"wm_{k}": v for k, v in self.worker_matrices.items()})
        arrays.update({f"test_{k}": v for k, v in self.test_probas.items()})
        if self.targets is not None:
            arrays["targets"] = self.targets
        np.savez_compressed(d / "arrays.npz", **arrays)
        if self.model_states:
            torch.save({k: {n: t.cpu() for n, t in v.items()} for k, v in self.model_states.items()}, d / "models.pt")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> KDResult:
        d = Path(directory)
        if not (d / "result.json").is_file():
            raise CrowdDataError(f"no KD-Crowd result in {d} (result.json missing).",
                                 hint="give the folder a run was saved to.")
        meta = json.loads((d / "result.json").read_text())
        z = np.load(d / "arrays.npz")
        probas = {k[6:]: z[k] for k in z.files if k.startswith("proba_")}
        wm = {k[3:]: z[k] for k in z.files if k.startswith("wm_")}
        test = {k[5:]: z[k] for k in z.files if k.startswith("test_")}
        states = {}
        if (d / "models.pt").is_file():
            states = torch.load(d / "models.pt", map_location="cpu", weights_only=True)
        return cls(classes=pd.Index(meta["classes"]), item_ids=pd.Index(meta["item_ids"]),
                   worker_ids=pd.Index(meta["worker_ids"]), config=KDConfig.from_dict(meta["config"]),
                   device=meta["device"], probas=probas, worker_matrices=wm, history=meta.get("history", []),
                   timings=meta.get("timings", {}), train_accuracy=meta.get("train_accuracy", {}),
                   test_accuracy=meta.get("test_accuracy", {}), valid_accuracy=meta.get("valid_accuracy", {}),
                   test_probas=test, test_ids=None if meta.get("test_ids") is None else pd.Index(meta["test_ids"]),
                   targets=z["targets"] if "targets" in z.files else None,
                   forget_rate=meta.get("forget_rate", 0.0), robust=meta.get("robust", ""), model_states=states,
                   n_features=int(meta.get("n_features", 0)))


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# =============================================================== the trainer
class KDCrowd:
    """KD-Crowd trainer.  ``KDCrowd(cfg).fit(data, valid=..., test=..., callback=..., cancel=...) -> KDResult``.

    Fitted attributes: ``result_`` (KDResult), ``models_`` (dict ``teacher, student, stage2`` ->
    classifier :class:`~kdcrowd_core.models.heads.Head`), ``teacher_``, ``stage2_`` (crowd models), ``device_``.
    """

    def __init__(self, config: KDConfig | dict | None = None, **overrides):
        if config is None:
            config = KDConfig()
        elif isinstance(config, dict):
            config = KDConfig.from_dict(config)
        if overrides:
            config = KDConfig.from_dict({**config.to_dict(), **overrides})
        self.config = config.validate()
        self.models_: dict[str, Head] = {}

    # ----------------------------------------------------------------- checks
    @staticmethod
    def _check_data(data: CrowdData) -> None:
        if not isinstance(data, CrowdData):
            raise CrowdDataError(f"expected CrowdData, got {type(data).__name__}.",
                                 hint="read the answers with kdcrowd_core.io or build a CrowdData.")
        if data.features is None:
            raise CrowdDataError("KD-Crowd needs item features, and these answers have none.",
                                 hint="attach a feature table (one row per item) with CrowdData.with_features.")
        if data.n_items < 4:
            raise CrowdDataError(f"KD-Crowd needs at least 4 items, got {data.n_items}.")
        X = data.features
        if X.ndim != 2 or X.shape[0] != data.n_items or not np.all(np.isfinite(X)):
            raise CrowdDataError("features must be a finite (n_items, d) array.")

    @staticmethod
    def _split(name, split, d: int, K: int, need_y: bool):
        if split is None:
            return None, None
        if not isinstance(split, (tuple, list)) or len(split) < 2:
            raise CrowdDataError(f"{name} must be a tuple (X, y{', ids' if name == 'test' else ''}).")
        X = np.asarray(split[0], dtype=np.float32)
        y = None if split[1] is None else np.asarray(split[1], dtype=np.int64)
        if X.ndim != 2 or X.shape[1] != d:
            raise CrowdDataError(f"{name} features must have shape (n, {d}), got {X.shape}.",
                                 hint="use the same feature columns as the training items.")
        if not np.all(np.isfinite(X)):
            raise CrowdDataError(f"{name} features contain NaN or infinite values.")
        if y is not None:
            if y.shape != (X.shape[0],):
                raise CrowdDataError(f"{name} labels must be one class code per row ({X.shape[0]}).")
            if y.size and (y.max() >= K or y.min() < -1):
                raise CrowdDataError(f"{name} labels must be class codes in [0, {K}) (or -1 for unknown).")
        elif need_y:
            raise CrowdDataError(f"{name} needs labels.")
        return X, y

    # -------------------------------------------------------------------- fit
    def fit(self, data: CrowdData, valid=None, test=None, callback: Callable[[dict], None] | None = None,
            cancel: threading.Event | None = None) -> KDResult:
        """Run the three stages; see the module docstring.

        Parameters
        ----------
        data : CrowdData with ``features`` (N, d) and optional ``gold`` (N,) (-1 = unknown).
        valid : (X_valid (n, d), y_valid (n,) codes) or None — used ONLY for model selection
            (each stage keeps its epoch with the best validation accuracy) and early stopping.
        test : (X_test (m, d), y_test codes or None, test_ids) or None — predicted and scored, never selected on.
        callback : called with every progress event (a dict, see KD_API.md).
        cancel : a threading.Event; once set, fit raises TrainingCancelled within one mini-batch.
        """
        cfg = self.config.validate()
        self._check_data(data)
        K, d = data.n_classes, data.features.shape[1]
        Xv, yv = self._split("valid", valid, d, K, need_y=True)
        Xt, yt = self._split("test", test, d, K, need_y=False)
        test_ids = None
        if test is not None:
            test_ids = pd.Index(test[2]) if len(test) > 2 and test[2] is not None else pd.RangeIndex(len(Xt))
        dev = resolve_device(cfg.device)
        old_threads = torch.get_num_threads()
        if cfg.num_threads > 0 and dev.type == "cpu":
            torch.set_num_threads(int(cfg.num_threads))
        try:
            return self._fit(data, cfg, dev, Xv, yv, Xt, yt, test_ids, callback, cancel)
        finally:
            if cfg.num_threads > 0 and dev.type == "cpu":
                torch.set_num_threads(old_threads)

    def _fit(self, data, cfg, dev, Xv, yv, Xt, yt, test_ids, callback, cancel) -> KDResult:
        folds = cfg.cross_fit_folds if cfg.cross_fit_folds > 1 else 0
        n_students = len(AUTO_ROBUST_CANDIDATES) if (cfg.robust == "auto" and Xv is not None) else 1
        per_round = cfg.epochs_student * n_students * cfg.student_ensemble + cfg.epochs_stage2
        total = (2 + cfg.epochs_teacher * (1 + folds) + per_round
                 + (cfg.rounds - 1) * (cfg.epochs_teacher * max(folds, 0) + per_round))
        self.prepare(data, dev, Xv, yv, _Run(callback, cancel, total))
        self.run_teacher()
        student, s_probs = self.run_student()
        stage2, stage2_q = self.run_stage2(s_probs)
        for _ in range(2, cfg.rounds + 1):
            self.run_round_targets(stage2, s_probs)
            student, s_probs = self.run_student()
            stage2, stage2_q = self.run_stage2(s_probs, teacher=stage2)
        return self._collect(student, s_probs, stage2, stage2_q, Xt, yt, test_ids)

    # ------------------------------------------------------- stages, reusable
    def prepare(self, data: CrowdData, dev: torch.device, Xv=None, yv=None, run: _Run | None = None) -> _Ctx:
        """Stage 0: majority vote, Dawid-Skene, tensors on the device (sets ``mv_``, ``ds_``, ``ctx_``)."""
        from .inference import DawidSkene, MajorityVote
        cfg = self.config
        run = run or _Run(None, None, 1)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % (2 ** 32))
        run.check()
        self.data_, self.timings_ = data, {}
        t = time.perf_counter()
        self.mv_ = MajorityVote(soft=True, use_gold=cfg.use_gold).fit(data)
        self.timings_["mv"] = time.perf_counter() - t
        run.event("mv", 1, 1, None, message="majority vote")
        t = time.perf_counter()
        self.ds_ = DawidSkene(alpha=cfg.ds_alpha, use_gold=cfg.use_gold,
                              device=str(dev) if dev.type != "mps" else "cpu").fit(data)
        self.timings_["ds"] = time.perf_counter() - t
        gold_np = data.gold if data.has_gold else None
        run.event("ds", 1, 1, None, _acc_np(self.ds_.proba_array_, gold_np), message="Dawid-Skene")
        gen = torch.Generator().manual_seed(int(cfg.seed))
        self.ctx_ = _Ctx(X=_to_t(data.features, dev), ans=_Answers.from_data(data, dev), K=data.n_classes,
                         R=data.n_workers, cfg=cfg, dev=dev,
                         gold=None if gold_np is None else _to_t(gold_np, dev, torch.long),
                         Xv=None if Xv is None else _to_t(Xv, dev),
                         yv=None if yv is None else _to_t(yv, dev, torch.long), run=run, gen=gen)
        self.device_ = dev
        return self.ctx_

    def new_crowd_model(self, teacher: str | None = None) -> CrowdModel:
        """A fresh crowd model (DS-initialised where it applies), standardiser fitted on the items."""
        cfg, ctx = self.config, self.ctx_
        head = _make_head(cfg, ctx.X.shape[1], ctx.K).to(ctx.dev)
        m = build_crowd_model(teacher or cfg.teacher, head, ctx.R, ctx.K, init_matrices=self.ds_.worker_matrices_,
                              trace_lambda=cfg.trace_lambda, conal_beta=cfg.conal_beta,
                              alpha=cfg.aggnet_alpha).to(ctx.dev)
        m.classifier.fit_standardizer(ctx.X)
        return m

    def run_teacher(self, teacher: str | None = None) -> torch.Tensor:
        """Stage 1a: the full-data teacher (``teacher_``, ``teacher_q_``) and the student's targets
        (``targets_``, out of fold with ``cross_fit_folds > 1``).  Returns the targets (N, K)."""
        cfg, ctx = self.config, self.ctx_
        N, K, dev = ctx.N, ctx.K, ctx.dev
        t = time.perf_counter()
        all_idx = torch.arange(N, device=dev)
        ds_q = _to_t(self.ds_.proba_array_, dev)
        teacher_m = self.new_crowd_model(teacher)
        train_crowd_model(ctx, teacher_m, all_idx, cfg.epochs_teacher, "teacher", init_q=ds_q, label="teacher")
        self.teacher_ = teacher_m
        self.teacher_q_ = crowd_posterior(teacher_m, ctx.X, ctx.ans, target=cfg.teacher_target)
        folds = cfg.cross_fit_folds if cfg.cross_fit_folds > 1 else 0
        if folds:
            targets = torch.zeros(N, K, device=dev)
            fold_of = torch.randperm(N, generator=ctx.gen).to(dev) % folds
            for f in range(folds):
                tr, ho = all_idx[fold_of != f], all_idx[fold_of == f]
                m = self.new_crowd_model(teacher)
                train_crowd_model(ctx, m, tr, cfg.epochs_teacher, "teacher", init_q=ds_q,
                                  label=f"out-of-fold teacher {f + 1}/{folds}")
                targets[ho] = crowd_posterior(m, ctx.X, ctx.ans, items=ho, target=cfg.teacher_target)
                del m
        else:
            targets = self.teacher_q_.clone()
        if cfg.use_gold and ctx.gold is not None:
            g = ctx.gold >= 0
            targets[g] = F.one_hot(ctx.gold[g], K).float()
        self.targets_ = targets
        self.timings_["teacher"] = time.perf_counter() - t
        return targets

    def run_round_targets(self, stage2: CrowdModel, s_probs: torch.Tensor) -> torch.Tensor:
        """Targets of the next round (``rounds > 1``): out of fold, each from a crowd model trained like
        stage 2 (crowd NLL + ``stage2_lambda * CE(p, s)`` with the previous student's predictions ``s``)
        on the other folds; in-sample (``stage2``'s posteriors) when ``cross_fit_folds < 2``.
        Sets ``targets_`` and returns it (N, K)."""
        cfg, ctx = self.config, self.ctx_
        N, K, dev = ctx.N, ctx.K, ctx.dev
        t = time.perf_counter()
        folds = cfg.cross_fit_folds if cfg.cross_fit_folds > 1 else 0
        if folds:
            all_idx = torch.arange(N, device=dev)
            ds_q = _to_t(self.ds_.proba_array_, dev)
            targets = torch.zeros(N, K, device=dev)
            fold_of = torch.randperm(N, generator=ctx.gen).to(dev) % folds
            for f in range(folds):
                tr, ho = all_idx[fold_of != f], all_idx[fold_of == f]
                m = self.new_crowd_model(stage2.name)
                train_crowd_model(ctx, m, tr, cfg.epochs_teacher, "teacher", student_probs=s_probs,
                                  lam=cfg.stage2_lambda, init_q=ds_q, label=f"next-round teacher {f + 1}/{folds}")
                targets[ho] = crowd_posterior(m, ctx.X, ctx.ans, items=ho, target=cfg.teacher_target)
                del m
        else:
            targets = crowd_posterior(stage2, ctx.X, ctx.ans, target=cfg.teacher_target)
        if cfg.use_gold and ctx.gold is not None:
            g = ctx.gold >= 0
            targets[g] = F.one_hot(ctx.gold[g], K).float()
        self.targets_ = targets
        self.timings_["rounds"] = self.timings_.get("rounds", 0.0) + time.perf_counter() - t
        return targets

    def auto_forget_rate(self, targets: torch.Tensor | None = None) -> float:
        """Share of items whose target's argmax differs from majority vote (the automatic forget rate)."""
        targets = self.targets_ if targets is None else targets
        mv_lab = _to_t(self.mv_.proba_array_, targets.device).argmax(1)
        return float((targets.argmax(1) != mv_lab).float().mean())

    def run_student(self, targets: torch.Tensor | None = None, distill: str | None = None,
                    robust: str | None = None, forget_rate: float | None = None, epochs: int | None = None,
                    stage: str = "student"):
        """Stage 1b: a fresh student on the targets.  Returns ``(head, probabilities on the items (N, K))``."""
        cfg, ctx = self.config, self.ctx_
        robust = robust or cfg.robust
        if robust == "auto":
            if ctx.Xv is None:
                robust = AUTO_ROBUST_CANDIDATES[0]
            else:
                best, t_auto = None, time.perf_counter()
                for cand in AUTO_ROBUST_CANDIDATES:
                    torch.manual_seed(cfg.seed + 17)
                    head, sp = self.run_student(targets, distill, cand, forget_rate, epochs, stage)
                    va = _accuracy(head, ctx.Xv, ctx.yv)
                    if best is None or va > best[0]:
                        best = (va, head, sp, cand, self.forget_rate_)
                self.robust_, self.forget_rate_ = best[3], best[4]
                self.timings_["student"] = time.perf_counter() - t_auto
                ctx.run.event(stage, 1, 1, None, None, best[0], message=f"student: kept robust={best[3]}", count=False)
                return best[1], best[2]
        self.robust_ = robust
        t = time.perf_counter()
        targets = self.targets_ if targets is None else targets
        if forget_rate is None:
            forget_rate = self.auto_forget_rate(targets) if cfg.forget_rate is None else float(cfg.forget_rate)
        self.forget_rate_ = forget_rate if robust in ("small-loss", "co-teaching", "consistency") else 0.0
        epochs = cfg.epochs_student if epochs is None else epochs
        members = []
        n_members = int(cfg.student_ensemble)
        for k in range(n_members):
            if k > 0:
                torch.manual_seed(cfg.seed * 7919 + 104729 * k)
            member = _make_head(cfg, ctx.X.shape[1], ctx.K, student=True, ensemble=False).to(ctx.dev)
            member.fit_standardizer(ctx.X)
            peer = None
            if robust == "co-teaching":
                peer = _make_head(cfg, ctx.X.shape[1], ctx.K, student=True, ensemble=False).to(ctx.dev)
                peer.fit_standardizer(ctx.X)
            if epochs > 0:
                name = f"student (robust={robust})" + (f" {k + 1}/{n_members}" if n_members > 1 else "")
                train_student(ctx, member, targets, torch.arange(ctx.N, device=ctx.dev), epochs, stage=stage,
                              distill=distill, robust=robust, forget_rate=forget_rate, label=name, peer=peer)
            members.append(member)
        student = members[0] if n_members == 1 else EnsembleHead(members).to(ctx.dev)
        student.eval()
        s_probs = F.softmax(_logits(student, ctx.X), 1)
        self.timings_["student"] = time.perf_counter() - t
        return student, s_probs

    def run_stage2(self, s_probs: torch.Tensor, teacher: CrowdModel | None = None):
        """Stage 2: the crowd model retrained with ``stage2_lambda * CE(p, s)``.  Returns ``(model, posteriors)``."""
        cfg, ctx = self.config, self.ctx_
        t = time.perf_counter()
        teacher = self.teacher_ if teacher is None else teacher
        stage2 = copy.deepcopy(teacher) if cfg.stage2_warm_start else self.new_crowd_model(teacher.name)
        if cfg.epochs_stage2 > 0:
            train_crowd_model(ctx, stage2, torch.arange(ctx.N, device=ctx.dev), cfg.epochs_stage2, "stage2",
                              student_probs=s_probs, lam=cfg.stage2_lambda, init_q=None, label="stage 2")
        q = crowd_posterior(stage2, ctx.X, ctx.ans, target=cfg.teacher_target)
        self.timings_["stage2"] = time.perf_counter() - t
        return stage2, q

    def _collect(self, student, s_probs, stage2, stage2_q, Xt, yt, test_ids) -> KDResult:
        cfg, ctx, data, run = self.config, self.ctx_, self.data_, self.ctx_.run
        teacher = self.teacher_
        gold_np = data.gold if data.has_gold else None
        dev = ctx.dev
        self.stage2_ = stage2
        self.models_ = {"teacher": teacher.classifier, "student": student, "stage2": stage2.classifier}
        np64 = lambda x: x.detach().double().cpu().numpy()
        probas = {"mv": self.mv_.proba_array_, "ds": self.ds_.proba_array_, "teacher": np64(self.teacher_q_),
                  "student": np64(s_probs), "stage2": np64(stage2_q)}
        wm = {"ds": np.asarray(self.ds_.worker_matrices_, dtype=np.float64),
              "teacher": np64(effective_worker_matrices(teacher, ctx.X, ctx.ans)),
              "stage2": np64(effective_worker_matrices(stage2, ctx.X, ctx.ans))}
        train_acc = {k: _acc_np(v, gold_np) for k, v in probas.items()} if gold_np is not None else {}
        test_probas, test_acc = {}, {}
        if Xt is not None:
            Xt_t = _to_t(Xt, dev)
            for k, mdl in self.models_.items():
                test_probas[k] = np64(F.softmax(_logits(mdl, Xt_t), 1))
            if yt is not None and np.any(yt >= 0):
                test_acc = {k: _acc_np(v, yt) for k, v in test_probas.items()}
        valid_acc = {}
        if ctx.Xv is not None:
            valid_acc = {k: _accuracy(m, ctx.Xv, ctx.yv) for k, m in self.models_.items()}
        timings = dict(self.timings_)
        timings["total"] = time.perf_counter() - run.t0
        result = KDResult(classes=data.classes, item_ids=data.item_ids, worker_ids=data.worker_ids, config=cfg,
                          device=describe_device(dev), probas=probas, worker_matrices=wm, history=run.history,
                          timings=timings, train_accuracy=train_acc, test_accuracy=test_acc,
                          valid_accuracy=valid_acc, test_probas=test_probas, test_ids=test_ids,
                          targets=np64(self.targets_), forget_rate=float(self.forget_rate_),
                          robust=self.robust_,
                          model_states={k: {n: v.detach().cpu() for n, v in m.state_dict().items()}
                                        for k, m in self.models_.items()},
                          n_features=int(ctx.X.shape[1]))
        run.event("done", 1, 1, None, train_acc.get("stage2"), valid_acc.get("stage2"),
                  message=f"done in {timings['total']:.1f} s")
        result.history = run.history
        self.result_ = result
        return result

    # ---------------------------------------------------------------- predict
    def predict_proba(self, X: np.ndarray, model: str = "stage2") -> np.ndarray:
        """Class probabilities (n, K) float64 of new items from a trained classifier
        (``"stage2"`` (default), ``"student"`` or ``"teacher"``)."""
        if not self.models_:
            raise CrowdDataError("the trainer is not fitted.", hint="call fit() or KDCrowd.load(dir) first.")
        if model not in self.models_:
            raise CrowdDataError(f"unknown model {model!r}.", hint=f"choose one of {list(self.models_)}.")
        head = self.models_[model]
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != head.n_features:
            raise CrowdDataError(f"features must have shape (n, {head.n_features}), got {X.shape}.")
        if not np.all(np.isfinite(X)):
            raise CrowdDataError("features contain NaN or infinite values.")
        dev = next(head.parameters()).device
        return F.softmax(_logits(head, _to_t(X, dev)), 1).double().cpu().numpy()

    def predict(self, X: np.ndarray, model: str = "stage2") -> np.ndarray:
        """Predicted class codes (n,) (``result_.classes.take(...)`` gives names)."""
        return self.predict_proba(X, model).argmax(1)

    # ------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Save the result and the classifiers' weights (same layout as :meth:`KDResult.save`)."""
        if getattr(self, "result_", None) is None:
            raise CrowdDataError("the trainer is not fitted; nothing to save.")
        return self.result_.save(directory)

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> KDCrowd:
        """Restore a trainer able to predict (weights loaded with ``weights_only=True``)."""
        res = KDResult.load(directory)
        tr = cls(res.config)
        dev = resolve_device(device)
        if not res.model_states:
            raise CrowdDataError(f"no model weights in {directory} (models.pt missing).")
        K = len(res.classes)
        for k, st in res.model_states.items():
            head = _make_head(res.config, res.n_features, K, student=(k == "student")).to(dev)
            head.load_state_dict(st)
            head.eval()
            tr.models_[k] = head
        tr.result_ = res
        tr.device_ = dev
        return tr


def _acc_np(p: np.ndarray, y: np.ndarray | None) -> float | None:
    if y is None:
        return None
    m = y >= 0
    if not m.any():
        return None
    return float((np.asarray(p)[m].argmax(1) == y[m]).mean())
