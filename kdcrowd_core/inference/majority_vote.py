"""Majority vote, hard and soft, with a deterministic tie-break."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import CrowdData
from ._sparse import clamp_gold, soft_majority
from .base import BaseInference, register


@register("majority_vote", "mv", "majority", "soft_mv")
@dataclass(repr=False)
class MajorityVote(BaseInference):
    """Majority vote.

    Parameters
    ----------
    soft : bool, default True
        ``True``: ``probas_`` are the vote proportions per item.  ``False``:
        one-hot on the winning label.  ``labels_`` are the same either way.
    use_gold : bool, default False
        Clamp items with a gold label to it.

    Tie-break (deterministic, documented): among labels with the most votes,
    the one that comes first in ``data.classes`` wins (numeric labels sort
    numerically, text labels alphabetically), as ``numpy.argmax`` does.  No
    randomness: the same input always gives the same labels.
    ``tie_`` (bool array, N) marks the items whose vote was tied.
    """

    soft: bool = True
    use_gold: bool = False

    def _fit(self, data: CrowdData) -> np.ndarray:
        p = soft_majority(data)
        winner = p.argmax(axis=1)
        self.tie_ = (p >= p.max(axis=1, keepdims=True) - 1e-12).sum(axis=1) > 1
        if not self.soft:
            p = np.zeros_like(p)
            p[np.arange(len(p)), winner] = 1.0
        else:
            # make argmax of the soft probabilities respect the tie-break: nudge winners by 1e-9
            p = p.copy()
            p[np.arange(len(p)), winner] += 1e-9
            p /= p.sum(axis=1, keepdims=True)
        if self.use_gold:
            clamp_gold(p, data)
        return p


def expected_tie_accuracy(votes: np.ndarray, truth: np.ndarray) -> float:
    """Accuracy of majority vote when ties are broken uniformly at random, in expectation.

    Published majority-vote accuracies usually come from random tie-breaks;
    this gives the comparable number without randomness.
    """
    top = votes >= votes.max(axis=1, keepdims=True) - 1e-12
    return float((top[np.arange(len(truth)), truth] / top.sum(axis=1)).mean())
