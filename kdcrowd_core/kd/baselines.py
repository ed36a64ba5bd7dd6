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

if TYPE_CHECKING:
    from .trainer import KDCrowd

#: Names of the baselines, in the order they are trained.
BASELINES = ("mv", "ds")


def train_baselines(trainer: KDCrowd, Xt: np.ndarray) -> dict[str, np.ndarray]:
    """Train one classifier per baseline on the trainer's items; returns ``{name: test probabilities (n, K)}``.

    The trainer's student settings (robust technique, forget rate, timings) are restored afterwards (the
    trainer counts the baselines' epochs in the run's progress total from the start).
    """
    ctx = trainer.ctx_
    cfg = trainer.config
    saved = (getattr(trainer, "robust_", ""), getattr(trainer, "forget_rate_", 0.0), dict(trainer.timings_))
    Xt_t = _to_t(Xt, ctx.dev)
    out = {}
    for name in BASELINES:
        q = (trainer.mv_ if name == "mv" else trainer.ds_).proba_array_
        hard = F.one_hot(torch.as_tensor(np.asarray(q).argmax(1)), ctx.K).float().to(ctx.dev)
        torch.manual_seed(cfg.seed + 31)
        head, _ = trainer.run_student(targets=hard, distill="ce", robust="none", forget_rate=0.0,
                                      stage=f"baseline-{name}")
        out[name] = F.softmax(_logits(head, Xt_t), 1).double().cpu().numpy()
    trainer.robust_, trainer.forget_rate_, trainer.timings_ = saved[0], saved[1], saved[2]
    return out
