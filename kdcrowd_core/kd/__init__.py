"""The KD-Crowd trainer: teacher crowd model -> robust student -> stage 2.

See docs/kd.md for the method as implemented, every setting and the measurements behind the
defaults.  The package, one concern per module:

- :mod:`.config`: :class:`KDConfig` (every setting, defaults; settings measured and not adopted are
  grouped under *experimental*) and the accepted choices (``TEACHERS``, ``DISTILL_LOSSES``, ...);
- :mod:`.context`: what every stage shares (answers on the device, run events and cancellation,
  classifier heads, per-stage model selection on validation data);
- :mod:`.teacher`: stage 1a, crowd-model training, posteriors, out-of-fold student targets, rounds;
- :mod:`.student`: stage 1b, distillation (MIG^f, KL, CE) with a robust technique;
- :mod:`.stage2`: stage 2, the crowd model retrained under the student's predictions;
- :mod:`.result`: :class:`KDResult` and its save/load;
- :mod:`.trainer`: :class:`KDCrowd`, which runs the stages and predicts.

In short:

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

from .config import (AUTO_ROBUST_CANDIDATES, DISTILL_LOSSES, EXPERIMENTAL_ROBUST, EXPERIMENTAL_SETTINGS, METHODS,
                     MODELS, ROBUST_METHODS, STAGES, TEACHERS, KDConfig)
from .context import (TrainingCancelled, _acc_np, _accuracy, _Answers, _auto_batch, _Ctx, _logits, _make_head,
                      _Run, _Selector, _state, _to_t)
from .result import KDResult
from .stage2 import run_stage2
from .student import _agreement_weights, auto_forget_rate, run_student, train_student
from .teacher import (crowd_posterior, effective_worker_matrices, run_round_targets, run_teacher,
                      train_crowd_model)
from .trainer import KDCrowd

__all__ = [
    "AUTO_ROBUST_CANDIDATES", "DISTILL_LOSSES", "EXPERIMENTAL_ROBUST", "EXPERIMENTAL_SETTINGS", "METHODS", "MODELS",
    "ROBUST_METHODS", "STAGES", "TEACHERS", "KDConfig", "KDCrowd", "KDResult", "TrainingCancelled",
    "auto_forget_rate", "crowd_posterior", "effective_worker_matrices", "run_round_targets", "run_stage2",
    "run_student", "run_teacher", "train_crowd_model", "train_student",
    # private helpers re-exported for the benchmarks and tests that used them from the single module
    "_Answers", "_Ctx", "_Run", "_Selector", "_acc_np", "_accuracy", "_agreement_weights",
    "_auto_batch", "_logits", "_make_head", "_state", "_to_t",
]
