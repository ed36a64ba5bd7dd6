"""Stage 1b, the student: a fresh classifier distilled from the teacher's targets with a distillation
loss (MIG^f, KL, CE) and a noise-model-free robust technique; ``robust="auto"`` picks the technique on
validation data."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .. import losses as L
from ..models import EnsembleHead, Head
from .config import AUTO_ROBUST_CANDIDATES
from .context import _accuracy, _Ctx, _logits, _make_head, _Selector, _to_t, make_optimizer, make_schedule

if TYPE_CHECKING:
    from .trainer import KDCrowd


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
    ctx.pick_threads()
    distill = distill or cfg.distill
    robust = robust or cfg.robust
    B = ctx.batch_size(train_idx.shape[0])
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
    opt = make_optimizer(cfg, params, cfg.lr, wd)

    agree_w = _agreement_weights(ctx, targets, train_idx) if robust == "agreement" else None

    def dloss(lg, t, rows, w=None):
        if distill.startswith("mig"):
            out = L.mig_loss(L.softmax_rows(lg), t, prior, f=distill.split("-", 1)[1],
                             marginal_teacher=marg_targets if marg_all else None, self_index=rows, weight=w)
            return out + L.gce_loss(lg, t, q=cfg.gce_q) if robust == "gce" else out
        if robust == "gce":
            return L.gce_loss(lg, t, q=cfg.gce_q)
        if distill == "kl":
            per = L.kl_distillation(lg, t, temperature=cfg.temperature, reduction="none")
        else:
            per = L.soft_cross_entropy(lg, t, reduction="none")
        return per.mean() if w is None else (w * per).sum() / w.sum().clamp_min(1e-12)
    sched = make_schedule(cfg, opt, epochs, cosine=cfg.student_schedule == "cosine")
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
        tot, nb = torch.zeros((), device=ctx.dev), 0
        for s in range(0, perm.shape[0], B):
            ctx.run.check()
            idx = perm[s:s + B]
            if idx.shape[0] < 2 and distill.startswith("mig") and not marg_all:
                continue
            xb, t = ctx.X.index_select(0, idx), targets.index_select(0, idx)
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
            tot += loss.detach().float()
            nb += 1
        if sched is not None:
            sched.step()
        va, stop = sel.step(ep) if sel is not None else (None, False)
        ta = _accuracy(head, ctx.X, ctx.gold) if ctx.gold is not None else None
        ctx.run.event(stage, ep, epochs, float(tot) / max(nb, 1), ta, va, message=label)
        if stop:
            ctx.run.skip(epochs - ep)
            break
    if sel is not None:
        sel.finish()
    head.eval()
    return head


# =============================================================== the student stage
def auto_forget_rate(trainer: KDCrowd, targets: torch.Tensor | None = None) -> float:
    """Share of items whose target's argmax differs from majority vote (the automatic forget rate)."""
    targets = trainer.targets_ if targets is None else targets
    mv_lab = _to_t(trainer.mv_.proba_array_, targets.device).argmax(1)
    return float((targets.argmax(1) != mv_lab).float().mean())


def run_student(trainer: KDCrowd, targets: torch.Tensor | None = None, distill: str | None = None,
                robust: str | None = None, forget_rate: float | None = None, epochs: int | None = None,
                stage: str = "student"):
    """Stage 1b: a fresh student on the targets.  Returns ``(head, probabilities on the items (N, K))``."""
    cfg, ctx = trainer.config, trainer.ctx_
    robust = robust or cfg.robust
    if robust == "auto":
        if ctx.Xv is None:
            robust = AUTO_ROBUST_CANDIDATES[0]
        else:
            best, t_auto = None, time.perf_counter()
            for cand in AUTO_ROBUST_CANDIDATES:
                torch.manual_seed(cfg.seed + 17)
                head, sp = trainer.run_student(targets, distill, cand, forget_rate, epochs, stage)
                va = _accuracy(head, ctx.Xv, ctx.yv)
                if best is None or va > best[0]:
                    best = (va, head, sp, cand, trainer.forget_rate_)
            trainer.robust_, trainer.forget_rate_ = best[3], best[4]
            trainer.timings_["student"] = time.perf_counter() - t_auto
            ctx.run.event(stage, 1, 1, None, None, best[0], message=f"student: kept robust={best[3]}", count=False)
            return best[1], best[2]
    trainer.robust_ = robust
    t = time.perf_counter()
    targets = trainer.targets_ if targets is None else targets
    if forget_rate is None:
        forget_rate = trainer.auto_forget_rate(targets) if cfg.forget_rate is None else float(cfg.forget_rate)
    trainer.forget_rate_ = forget_rate if robust in ("small-loss", "co-teaching", "consistency") else 0.0
    epochs = cfg.epochs_student if epochs is None else epochs
    student = train_student_members(ctx, new_student_members(ctx, robust), targets, epochs, stage, distill,
                                    robust, forget_rate)
    s_probs = F.softmax(_logits(student, ctx.X), 1)
    trainer.timings_["student"] = time.perf_counter() - t
    return student, s_probs


def new_student_members(ctx: _Ctx, robust: str) -> list[tuple[Head, Head | None]]:
    """The student's fresh heads (``student_ensemble`` of them, each with its Co-teaching peer or None),
    standardisers fitted on the items; initialised from the global generator (member k > 0 reseeded)."""
    cfg = ctx.cfg
    out = []
    for k in range(int(cfg.student_ensemble)):
        if k > 0:
            torch.manual_seed(cfg.seed * 7919 + 104729 * k)
        member = _make_head(cfg, ctx.X.shape[1], ctx.K, student=True, ensemble=False).to(ctx.dev)
        ctx.fit_standardizer(member)
        peer = None
        if robust == "co-teaching":
            peer = _make_head(cfg, ctx.X.shape[1], ctx.K, student=True, ensemble=False).to(ctx.dev)
            ctx.fit_standardizer(peer)
        out.append((member, peer))
    return out


def train_student_members(ctx: _Ctx, members: list[tuple[Head, Head | None]], targets: torch.Tensor, epochs: int,
                          stage: str, distill: str | None, robust: str, forget_rate: float):
    """Train each member (:func:`train_student`) on every item; returns the student head (the member, or an
    :class:`EnsembleHead` of them) in eval mode."""
    n_members = len(members)
    for k, (member, peer) in enumerate(members):
        if epochs > 0:
            name = f"student (robust={robust})" + (f" {k + 1}/{n_members}" if n_members > 1 else "")
            train_student(ctx, member, targets, torch.arange(ctx.N, device=ctx.dev), epochs, stage=stage,
                          distill=distill, robust=robust, forget_rate=forget_rate, label=name, peer=peer)
    student = members[0][0] if n_members == 1 else EnsembleHead([m for m, _ in members]).to(ctx.dev)
    student.eval()
    return student
