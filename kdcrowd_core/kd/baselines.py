"""Test-split baselines: classifiers with the student's head trained on majority-vote and on Dawid-Skene
labels (hard labels, cross-entropy, no robust technique), scored on the labelled test items.

They answer "did the crowd model and the distillation help, or would the same classifier trained on plain
aggregated labels do as well?" on data no model was selected on.  Their accuracies are added to
``KDResult.test_accuracy`` (and ``summary.json``'s ``test_accuracy``) under the keys ``mv`` and ``ds``, and
their test probabilities to ``test_probas``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from .context import _logits, _to_t
from .jobs import BASELINE_JOBS, run_jobs
from .student import new_student_members, train_student_members

if TYPE_CHECKING:
    from .trainer import KDCrowd

#: Names of the baselines, in the order they are trained.
BASELINES = ("mv", "ds")


def train_baselines(trainer: KDCrowd, Xt: np.ndarray) -> dict[str, np.ndarray]:
    """Train one classifier per baseline on the trainer's items; returns ``{name: test probabilities (n, K)}``.

    The baselines are independent jobs (:mod:`.jobs`: built first, each from the seed ``seed + 31`` as
    before, then trained side by side on the idle cores).  The trainer's student settings (robust technique,
    forget rate, timings) are untouched (the trainer counts the baselines' epochs in the run's progress total
    from the start).
    """
    ctx = trainer.ctx_
    cfg = trainer.config
    Xt_t = _to_t(Xt, ctx.dev)
    jobs = []
    for name in BASELINES:
        q = (trainer.mv_ if name == "mv" else trainer.ds_).proba_array_
        hard = F.one_hot(torch.as_tensor(np.asarray(q).argmax(1)), ctx.K).float().to(ctx.dev)
        torch.manual_seed(cfg.seed + 31)
        members = new_student_members(ctx, "none")

        def job(jctx, members=members, hard=hard, name=name):
            return train_student_members(jctx, members, hard, cfg.epochs_student, f"baseline-{name}", "ce", "none",
                                         0.0)
        jobs.append((job, [m for m, _ in members]))
    heads = run_jobs(ctx, BASELINE_JOBS, jobs)
    return {name: F.softmax(_logits(head, Xt_t), 1).double().cpu().numpy() for name, head in zip(BASELINES, heads)}
