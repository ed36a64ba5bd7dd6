"""Stage 2: the crowd model retrained (warm-started from the teacher, or fresh) on the answers plus
``stage2_lambda * CE(p(x_i), s_i)`` with the student's predictions ``s_i``; its classifier, posteriors and
worker matrices are the final outputs."""
from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING

import torch

from ..models.crowd import CrowdModel
from .teacher import crowd_posterior, train_crowd_model

if TYPE_CHECKING:
    from .trainer import KDCrowd


def run_stage2(trainer: KDCrowd, s_probs: torch.Tensor, teacher: CrowdModel | None = None):
    """Stage 2: the crowd model retrained with ``stage2_lambda * CE(p, s)``.  Returns ``(model, posteriors)``."""
    job, model = stage2_job(trainer, s_probs, teacher)
    return job(trainer.ctx_)


def stage2_job(trainer: KDCrowd, s_probs: torch.Tensor, teacher: CrowdModel | None = None):
    """Stage 2 as a job (:mod:`.jobs`): ``(fn, model)``, the model built now (warm start: a copy of ``teacher``,
    default the trainer's), ``fn(ctx) -> (model, posteriors)`` trains it (and sets ``timings_["stage2"]``)."""
    cfg = trainer.config
    teacher = trainer.teacher_ if teacher is None else teacher
    stage2 = copy.deepcopy(teacher) if cfg.stage2_warm_start else trainer.new_crowd_model(teacher.name)

    def job(ctx):
        t = time.perf_counter()
        if cfg.epochs_stage2 > 0:
            train_crowd_model(ctx, stage2, torch.arange(ctx.N, device=ctx.dev), cfg.epochs_stage2, "stage2",
                              student_probs=s_probs, lam=cfg.stage2_lambda, init_q=None, label="stage 2")
        q = crowd_posterior(stage2, ctx.X, ctx.ans, target=cfg.teacher_target)
        trainer.timings_["stage2"] = time.perf_counter() - t
        return stage2, q
    return job, stage2
