"""The recommended model of a KD-Crowd run: the best of teacher, student and stage 2.

- **With validation data** the recommended model is the one with the best validation accuracy
  (criterion ``"validation accuracy"``).
- **Without validation data** a share (``select_holdout``) of the crowd answers is held out of training
  (:func:`hold_out_answers`: at most one answer per item, only from items with at least two answers, so
  every item keeps an answer) and the models are compared by the mean log-likelihood of those answers
  (criterion ``"held-out answer likelihood"``): ``log sum_j p_j(x_i) T_r[j, c]`` with the classifier's
  probabilities ``p`` and one common noise model for every classifier, Dawid-Skene's worker matrices
  estimated on the training answers, so that the classifiers alone are compared.
- With neither (no validation data and ``select_holdout = 0``, the default) stage 2 is recommended (criterion
  :data:`DEFAULT_CRITERION`): measured without validation data (LabelMe and Music, seeds 0-2), stage 2 was the
  best of the three on test in 6/6 runs, while the held-out answer likelihood picked the teacher, the worst, in
  5/6 (the teacher's classifier fitted the other answers of the same items), so that criterion is off by default.

Ties prefer stage 2, then the student, then the teacher (the pipeline's order, last first).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from ..data import CrowdData
from .config import MODELS
from .context import _logits

#: Criterion named when nothing was compared (no validation data, ``select_holdout = 0``: the default).
DEFAULT_CRITERION = "stage 2 by default (no validation data)"
#: Preference on ties, first preferred.
TIE_ORDER: tuple[str, ...] = ("stage2", "student", "teacher")
NAMES = {"teacher": "the teacher", "student": "the student", "stage2": "stage 2"}


def hold_out_answers(data: CrowdData, share: float, seed: int):
    """Hold ``share`` of the answers out of training for the label-free choice of the recommended model.

    At most one answer per item, only from items with >= 2 answers (every item keeps an answer); item and
    worker codes are unchanged.  Returns ``(training data, held answers (item, worker, label) or None)``."""
    if share <= 0 or data.n_answers < 2:
        return data, None
    cnt = np.bincount(data.item, minlength=data.n_items)
    rng = np.random.default_rng(int(seed) + 7919)
    order = rng.permutation(data.n_answers)
    first = np.full(data.n_items, -1, dtype=np.int64)   # one random answer per item
    first[data.item[order[::-1]]] = order[::-1]
    cand = first[(cnt >= 2) & (first >= 0)]
    n = min(cand.size, int(round(share * data.n_answers)))
    if n < 1:
        return data, None
    held = np.sort(rng.choice(cand, size=n, replace=False))
    keep = np.ones(data.n_answers, dtype=bool)
    keep[held] = False
    train = dataclasses.replace(data, item=data.item[keep], worker=data.worker[keep], label=data.label[keep])
    return train, (data.item[held], data.worker[held], data.label[held])


@torch.no_grad()
def heldout_log_likelihood(model: torch.nn.Module, X: torch.Tensor, held, T: np.ndarray) -> float:
    """Mean over held-out answers (i, r, c) of ``log sum_j p_j(x_i) T[r, j, c]``."""
    item, worker, label = (torch.as_tensor(a, device=X.device) for a in held)
    p = F.softmax(_logits(model, X[item]), 1).double()
    Tt = torch.as_tensor(np.asarray(T), dtype=torch.float64, device=X.device)
    pc = (p * Tt[worker, :, label]).sum(1)
    return float(torch.log(pc.clamp_min(1e-12)).mean())


def choose(scores: dict[str, float | None], criterion: str, higher: str = "accuracy") -> tuple[str, dict]:
    """The best model by ``scores`` (ties: :data:`TIE_ORDER`), and the ``final_model`` record with a plain
    sentence (``note``) saying when the student or stage 2 did not beat the teacher."""
    known = {k: v for k, v in scores.items() if v is not None and k in MODELS}
    if not known:
        final = "stage2"
        note = ("No validation data: stage 2 is recommended by default. Without validation data it was the best of "
                "the three on test in 6 of 6 runs on LabelMe and Music (docs/kd.md); hold out some gold items as "
                "validation data to check it on these data.")
        return final, {"name": final, "criterion": DEFAULT_CRITERION, "scores": {}, "note": note}
    best = max(known.values())
    final = next(k for k in TIE_ORDER if k in known and known[k] == best)
    fmt = (lambda v: f"{v:.3f}") if higher == "accuracy" else (lambda v: f"{v:.4f}")
    parts = [f"Recommended: {NAMES[final]} (best {criterion}: " +
             ", ".join(f"{NAMES[k]} {fmt(v)}" for k, v in known.items()) + ")."]
    t = known.get("teacher")
    if t is not None:
        worse = [k for k in ("student", "stage2") if k in known and known[k] <= t]
        if worse:
            who = " and ".join(NAMES[k] for k in worse)
            parts.append(f"{who[0].upper() + who[1:]} did not beat the teacher on {criterion}"
                         f"{'; the teacher is recommended' if final == 'teacher' else ''}.")
    return final, {"name": final, "criterion": criterion, "scores": dict(known), "note": " ".join(parts)}
