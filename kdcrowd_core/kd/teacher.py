"""Stage 1a, the teacher: training a crowd model (classifier + per-worker noise model) on the answers,
its posteriors and worker matrices, the full-data teacher and the student's (out-of-fold) targets, and the
targets of later rounds.  Stage 2 trains crowd models with the same :func:`train_crowd_model`."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .. import losses as L
from ..models.crowd import CrowdModel
from .context import _accuracy, _Answers, _Ctx, _Selector, _to_t, make_optimizer, make_schedule
from .jobs import ROUND_JOBS, TEACHER_JOBS, run_jobs

if TYPE_CHECKING:
    from .trainer import KDCrowd


@torch.no_grad()
def crowd_posterior(model: CrowdModel, X: torch.Tensor, ans: _Answers, items: torch.Tensor | None = None,
                    target: str = "posterior", chunk: int = 8192, logits_out: list | None = None) -> torch.Tensor:
    """Teacher's true-label probabilities for ``items`` (default all): (n, K).

    ``"posterior"``: ``q_i ∝ p(x_i) prod_{(i, r, c)} P(c | y = j, r, x_i)`` in log space;
    ``"classifier"``: ``p(x_i)``.  ``logits_out``: a list that receives the classifier's logits (n, K)
    (the same forward pass, for accuracies without a second one).

    All items of a model whose answer likelihood does not depend on the item (every one but CoNAL): each
    item's answer term is the sum of its answers' rows of :meth:`~CrowdModel.log_lik_table`, one
    ``embedding_bag`` per chunk (chunks of 8,192 items keep the forward pass's activations in cache).
    """
    was = model.training
    model.eval()
    n = X.shape[0] if items is None else items.shape[0]
    outs, lgs = [], []
    table = model.log_lik_table() if items is None and target == "posterior" else None
    if table is not None:
        key = ans.key(model.n_classes)
        for s in range(0, n, chunk):
            e = min(s + chunk, n)
            logits = model(X[s:e]).float()
            if logits_out is not None:
                lgs.append(logits)
            a0 = ans.ptr[s]
            ll = F.embedding_bag(key[int(a0):int(ans.ptr[e])], table, ans.ptr[s:e] - a0, mode="sum")
            outs.append(L.softmax_rows(logits + ll))
    for s in range(0, n if table is None else 0, chunk):   # per answer: CoNAL, a subset of items, a huge table
        if items is None:   # a range of items: their answers are one slice of the item-sorted answers
            e = min(s + chunk, n)
            xb = X[s:e]
            a0, a1 = int(ans.ptr[s]), int(ans.ptr[e])
            a_local, a_w, a_l = ans.item[a0:a1] - s, ans.worker[a0:a1], ans.label[a0:a1]
        else:
            idx = items[s:s + chunk]
            xb = X[idx]
        logits = model(xb).float()
        if logits_out is not None:
            lgs.append(logits)
        logp = F.log_softmax(logits, dim=1)
        if target == "posterior":
            if items is not None:
                a_local, a_w, a_l = ans.of_items(idx)
            emb = model.item_embedding(xb) if model.needs_item_embedding else None
            ll = model.answer_log_lik(a_w, a_l, None if emb is None else emb[a_local]).float()
            logp = logp.index_add_(0, a_local, ll)
        outs.append(F.softmax(logp, dim=1))
    model.train(was)
    if logits_out is not None:
        logits_out.append(torch.cat(lgs) if lgs else torch.zeros(0, model.n_classes, device=X.device))
    return torch.cat(outs) if outs else torch.zeros(0, model.n_classes, device=X.device)


@torch.no_grad()
def effective_worker_matrices(model: CrowdModel, X: torch.Tensor, ans: _Answers, chunk: int = 65536) -> torch.Tensor:
    """Worker matrices (R, K, K); for CoNAL with each worker's mean gate over its answers."""
    was = model.training
    model.eval()
    gate = None
    if hasattr(model, "answer_matrices"):   # per-answer matrices (annot-mix): each worker's mean over its answers
        R, K = model.n_workers, model.n_classes
        tot = torch.zeros(R, K, K, device=X.device)
        for s in range(0, ans.item.shape[0], chunk * 4):
            it, w = ans.item[s:s + chunk * 4], ans.worker[s:s + chunk * 4]
            tot.index_add_(0, w, model.answer_matrices(model.item_embedding(X[it]), w).float())
        n = torch.bincount(ans.worker, minlength=R).clamp_min(1)
        T = torch.where((n > 0).view(-1, 1, 1) & (tot.sum(2, keepdim=True) > 0), tot / n.view(-1, 1, 1),
                        model.worker_matrices().float())
        model.train(was)
        return T
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

def train_crowd_model(ctx: _Ctx, model: CrowdModel, train_idx: torch.Tensor, epochs: int, stage: str,
                      student_probs: torch.Tensor | None = None, lam: float = 0.0, label: str = "",
                      init_q: torch.Tensor | None = None, select: bool = True) -> CrowdModel:
    """Train a crowd model on the answers of ``train_idx`` (ascending item indices; masked crowd NLL; EM for
    AggNet).

    ``student_probs`` (N, K) and ``lam`` add ``lam * CE(p(x_i), s_i)`` (stage 2).
    ``init_q`` (N, K): AggNet's posteriors for the first epoch (default: its E-step).

    The training items are gathered once (``X_tr``, their answers renumbered): mini-batches and the E-step
    then index that view, the E-step runs by item ranges over it, and the posteriors are (len(train_idx), K).
    """
    cfg = ctx.cfg
    ctx.pick_threads()
    n_tr = int(train_idx.shape[0])
    full = n_tr == ctx.N          # every item, in order
    B = ctx.batch_size(n_tr)
    rows = (lambda t: t) if full else (lambda t: t.index_select(0, train_idx))
    X_tr = rows(ctx.X)
    groups = [{"params": list(model.classifier.parameters()), "lr": cfg.lr}]
    tp = model.transition_parameters()
    if tp:
        groups.append({"params": tp, "lr": cfg.lr_transition})
    opt = make_optimizer(cfg, groups, cfg.lr, cfg.weight_decay)
    sched = make_schedule(cfg, opt, epochs)
    sel = _Selector(ctx, model, model.classifier, epochs) if select else None
    gold_m = None if ctx.gold is None else ctx.gold >= 0
    if gold_m is not None and not bool(gold_m.any()):
        gold_m = None
    distil = None if student_probs is None or lam <= 0 else rows(student_probs)
    mix = None
    if distil is not None:
        # stage 2: the E-step's prior mixes the classifier with the student's predictions
        mix = (distil + 1e-6) ** min(lam, 1.0)
    if model.em:
        t_ans = ctx.ans if full else ctx.ans.subset(train_idx, ctx.N)
        by_key = t_ans.by_key(model.n_workers, model.n_classes)

        def e_step():
            """Posteriors of the training items (n_tr, K) and the train accuracy, from one forward pass (every
            item's when gold labels score the classifier)."""
            lg = [] if gold_m is not None else None
            if gold_m is not None and not full:
                q = rows(crowd_posterior(model, ctx.X, ctx.ans, target="posterior", logits_out=lg))
            else:
                q = crowd_posterior(model, X_tr, t_ans, target="posterior", logits_out=lg)
            if mix is not None:
                q = q * mix
                q = q / q.sum(1, keepdim=True)
            ta = None if lg is None else float((lg[0][gold_m].argmax(1) == ctx.gold[gold_m]).float().mean())
            return q, ta

        # epoch 1's posteriors: init_q (AggNet starts from Dawid-Skene), else the E-step; later epochs use the
        # E-step computed at the end of the epoch before (the same model), which also gives its train accuracy
        q_next = None
        if init_q is not None:
            q_next = rows(init_q)
            if mix is not None:
                q_next = q_next * mix
                q_next = q_next / q_next.sum(1, keepdim=True)
    last = 0
    positions = torch.arange(n_tr, device=ctx.dev)
    for ep in range(1, epochs + 1):
        model.train()
        if model.em:
            q = q_next if q_next is not None else e_step()[0]
            model.m_step(q, t_ans.item, t_ans.worker, t_ans.label, by_key=by_key)
        perm = ctx.perm(positions)     # positions in the training view
        tot, nb = torch.zeros((), device=ctx.dev), 0
        for s in range(0, perm.shape[0], B):
            ctx.run.check()
            idx = perm[s:s + B]
            xb = X_tr.index_select(0, idx)
            with ctx.autocast():
                logits = model(xb)
                if model.em:
                    loss = L.soft_cross_entropy(logits, q.index_select(0, idx))
                else:
                    a_local, a_w, a_l = ctx.ans.of_items(idx if full else train_idx.index_select(0, idx))
                    loss = model.batch_loss(xb, logits, a_local, a_w, a_l, ctx.gen)
                    if loss is None:
                        probs = F.softmax(logits.float(), dim=1)
                        emb = model.item_embedding(xb) if model.needs_item_embedding else None
                        lp = model.answer_log_probs(probs, a_local, a_w, emb)
                        loss = L.crowd_nll(lp.float(), a_l) + model.penalty()
                if distil is not None:
                    loss = loss + lam * L.soft_cross_entropy(logits, distil.index_select(0, idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += loss.detach().float()
            nb += 1
        if sched is not None:
            sched.step()
        last = ep
        va, stop = sel.step(ep) if sel is not None else (None, False)
        if model.em:
            q_next, ta = e_step()
        else:
            ta = _accuracy(model.classifier, ctx.X, ctx.gold) if ctx.gold is not None else None
        ctx.run.event(stage, ep, epochs, float(tot) / max(nb, 1), ta, va, message=label)
        if stop:
            ctx.run.skip(epochs - ep)
            break
    changed = False
    if sel is not None:
        changed = sel.avg is not None or (sel.best_state is not None and sel.best_epoch != last)
        sel.finish()
    if model.em:  # final E/M so that the matrices match the returned classifier
        q = e_step()[0] if (changed or q_next is None or last == 0) else q_next
        model.m_step(q, t_ans.item, t_ans.worker, t_ans.label, by_key=by_key)
    model.eval()
    return model


# =============================================================== the teacher stage
def run_teacher(trainer: KDCrowd, teacher: str | None = None) -> torch.Tensor:
    """Stage 1a: the full-data teacher (``teacher_``, ``teacher_q_``) and the student's targets
    (``targets_``, out of fold with ``cross_fit_folds > 1``; then also ``oof_probs_``, each item's
    classifier probabilities from the fold model that never saw its answers).  Returns the targets (N, K).

    The full-data teacher and the fold teachers are independent jobs (:mod:`.jobs`): built first, in this
    order, then trained side by side on the idle cores."""
    cfg, ctx = trainer.config, trainer.ctx_
    N, K, dev = ctx.N, ctx.K, ctx.dev
    t = time.perf_counter()
    all_idx = torch.arange(N, device=dev)
    ds_q = _to_t(trainer.ds_.proba_array_, dev)
    folds = cfg.folds_for(N)
    teacher_m = trainer.new_crowd_model(teacher)
    fold_models = [trainer.new_crowd_model(teacher) for _ in range(folds)]
    fold_of = torch.randperm(N, generator=ctx.gen).to(dev) % folds if folds else None

    def full_job(jctx):
        train_crowd_model(jctx, teacher_m, all_idx, cfg.epochs_teacher, "teacher", init_q=ds_q, label="teacher")
        return crowd_posterior(teacher_m, jctx.X, jctx.ans, target=cfg.teacher_target)

    def fold_job(f):
        def job(jctx):
            tr, ho = all_idx[fold_of != f], all_idx[fold_of == f]
            m = fold_models[f]
            train_crowd_model(jctx, m, tr, cfg.epochs_teacher, "teacher", init_q=ds_q,
                              label=f"out-of-fold teacher {f + 1}/{folds}")
            lg = []   # the classifier's logits of the same forward pass
            q = crowd_posterior(m, jctx.X, jctx.ans, items=ho, target=cfg.teacher_target, logits_out=lg)
            return ho, q, F.softmax(lg[0], dim=1)
        return job

    out = run_jobs(ctx, TEACHER_JOBS, [(full_job, [teacher_m])] + [(fold_job(f), [fold_models[f]]) for f in range(folds)])
    trainer.teacher_, trainer.teacher_q_ = teacher_m, out[0]
    trainer.oof_probs_ = None
    if folds:
        targets = torch.zeros(N, K, device=dev)
        oof = torch.zeros(N, K, device=dev)     # each fold model's classifier on the items it never saw
        for ho, q, p in out[1:]:
            targets[ho], oof[ho] = q, p
        trainer.oof_probs_ = oof
    else:
        targets = trainer.teacher_q_.clone()
    if cfg.use_gold and ctx.gold is not None:
        g = ctx.gold >= 0
        targets[g] = F.one_hot(ctx.gold[g], K).float()
    trainer.targets_ = targets
    trainer.timings_["teacher"] = time.perf_counter() - t
    return targets


def run_round_targets(trainer: KDCrowd, stage2: CrowdModel, s_probs: torch.Tensor) -> torch.Tensor:
    """Targets of the next round (``rounds > 1``): out of fold, each from a crowd model trained like
    stage 2 (crowd NLL + ``stage2_lambda * CE(p, s)`` with the previous student's predictions ``s``)
    on the other folds (jobs side by side, :mod:`.jobs`); in-sample (``stage2``'s posteriors) when
    ``cross_fit_folds < 2``.  Sets ``targets_`` and returns it (N, K)."""
    cfg, ctx = trainer.config, trainer.ctx_
    t = time.perf_counter()
    if cfg.folds_for(ctx.N):
        jobs, finish = round_target_jobs(trainer, stage2.name, s_probs)
        targets = finish(run_jobs(ctx, ROUND_JOBS, jobs))
    else:
        targets = _with_gold(trainer, crowd_posterior(stage2, ctx.X, ctx.ans, target=cfg.teacher_target))
    trainer.targets_ = targets
    trainer.timings_["rounds"] = trainer.timings_.get("rounds", 0.0) + time.perf_counter() - t
    return targets


def round_target_jobs(trainer: KDCrowd, name: str, s_probs: torch.Tensor, round_: int | None = None):
    """The next round's fold models as jobs (``cross_fit_folds > 1``; :func:`run_round_targets`): ``(jobs,
    finish)``; the models are built now, ``finish(results)`` assembles the targets (N, K), gold clamped.
    ``round_``: the jobs' round (named in their seeds and events; default the run's current round)."""
    cfg, ctx = trainer.config, trainer.ctx_
    N, K, dev = ctx.N, ctx.K, ctx.dev
    folds = cfg.folds_for(N)
    all_idx = torch.arange(N, device=dev)
    ds_q = _to_t(trainer.ds_.proba_array_, dev)
    fold_of = torch.randperm(N, generator=ctx.gen).to(dev) % folds
    models = [trainer.new_crowd_model(name) for _ in range(folds)]

    def fold_job(f):
        def job(jctx):
            tr, ho = all_idx[fold_of != f], all_idx[fold_of == f]
            train_crowd_model(jctx, models[f], tr, cfg.epochs_teacher, "teacher", student_probs=s_probs,
                              lam=cfg.stage2_lambda, init_q=ds_q, label=f"next-round teacher {f + 1}/{folds}")
            return ho, crowd_posterior(models[f], jctx.X, jctx.ans, items=ho, target=cfg.teacher_target)
        return job

    def finish(results):
        targets = torch.zeros(N, K, device=dev)
        for ho, q in results:
            targets[ho] = q
        return _with_gold(trainer, targets)
    ident = (lambda f: ()) if round_ is None else (lambda f: ((ROUND_JOBS, f, round_),))
    return [(fold_job(f), [models[f]], *ident(f)) for f in range(folds)], finish


def _with_gold(trainer: KDCrowd, targets: torch.Tensor) -> torch.Tensor:
    ctx = trainer.ctx_
    if trainer.config.use_gold and ctx.gold is not None:
        g = ctx.gold >= 0
        targets[g] = F.one_hot(ctx.gold[g], ctx.K).float()
    return targets
