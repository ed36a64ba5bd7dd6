"""Majority vote, hard, soft and weighted by worker skills, with a deterministic tie-break."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data import CrowdData
from ..errors import CrowdDataError
from ._sparse import clamp_gold
from .base import BaseInference, register

_ON_MISSING = ("error", "ignore", "value")


@register("majority_vote", "mv", "majority", "soft_mv")
@dataclass(repr=False)
class MajorityVote(BaseInference):
    """Majority vote (Crowd-Kit's ``MajorityVote``: same arguments, same results).

    Parameters
    ----------
    default_skill : float or None
        Weight of a worker missing from ``skills`` when ``on_missing_skill="value"``.
    on_missing_skill : {"error", "ignore", "value"}, default "error"
        With ``fit(data, skills)``, what to do with the answers of a worker who has no
        skill: raise ``ValueError``; leave them out (``ValueError`` if a task is left
        without answers); weigh them by ``default_skill``.
    soft : bool, default True
        ``True``: ``probas_`` are the (weighted) vote shares per item.  ``False``:
        one-hot on the winning label.  ``labels_`` are the same either way.
    use_gold : bool, default False
        Clamp items with a gold label (CrowdData gold or ``true_labels``) to it.

    ``fit(data, skills=None, *, true_labels=None)``: ``skills`` is a Series indexed by
    worker; each answer counts with its worker's skill as weight.  Every answer
    counts, including a worker's repeated answers to one task.

    Tie-break (deterministic, documented): among labels with the most votes,
    the one that comes first in ``data.classes`` wins (labels sorted: numbers
    numerically, text alphabetically, ``False`` before ``True``), as ``numpy.argmax``
    does; this is what Crowd-Kit's tests expect.  ``tie_`` (bool array, N) marks tied items.

    Fitted: ``labels_``, ``probas_``, ``skills_`` (Series indexed by worker, sorted,
    name ``skill``: each worker's share of answers that agree with ``labels_``, a
    repeated identical answer counted once, as Crowd-Kit), ``tie_``, ``worker_matrices_``, ``errors_``.
    """

    default_skill: float | None = None
    on_missing_skill: str = "error"
    soft: bool = True
    use_gold: bool = False

    def fit(self, data: CrowdData | pd.DataFrame, skills: pd.Series | None = None, *,
            true_labels: pd.Series | None = None) -> MajorityVote:
        self._skills_in = skills
        try:
            self._fit_frame(data, true_labels)
        finally:
            del self._skills_in
        if self.data_ is None:
            self.skills_ = pd.Series(dtype=float, name="skill")
        return self

    def _answer_weights(self, data: CrowdData) -> np.ndarray | None:
        """Weight per answer from ``skills`` (NaN = leave the answer out), or None without skills."""
        skills = getattr(self, "_skills_in", None)
        if skills is None:
            return None
        if self.on_missing_skill not in _ON_MISSING:
            raise CrowdDataError(f"Unknown option {self.on_missing_skill!r} of \"on_missing_skill\" argument.",
                                 hint='use "error", "ignore" or "value".')
        if self.on_missing_skill != "value" and self.default_skill is not None:
            raise CrowdDataError('default_skill is used but on_missing_skill is not "value".',
                                 hint='set on_missing_skill="value" or drop default_skill.')
        pos = pd.Index(skills.index).get_indexer(data.worker_ids)
        w_skill = np.where(pos >= 0, np.asarray(skills, dtype=np.float64)[np.maximum(pos, 0)], np.nan) \
            if len(skills) else np.full(data.n_workers, np.nan)
        weights = w_skill[data.worker]
        missing = np.isnan(weights)
        if not missing.any():
            return weights
        if self.on_missing_skill == "error":
            raise CrowdDataError(
                f"Skill value is missing in {int(missing.sum())} assignments (workers without a skill, e.g. "
                f"{list(data.worker_ids[np.unique(data.worker[missing])][:3])}).",
                hint='give a skill for every worker, or use on_missing_skill="ignore" or "value".')
        if self.on_missing_skill == "value":
            if self.default_skill is None:
                raise CrowdDataError('Default skill value must be specified when using on_missing_skill="value".',
                                     hint="set default_skill.")
            weights[missing] = float(self.default_skill)
            return weights
        left = np.bincount(data.item[~missing], minlength=data.n_items)
        if (left == 0).any():
            raise CrowdDataError(
                f"{int((left == 0).sum())} tasks have no workers with known skills.",
                hint='give at least one worker with a known skill per task, or use on_missing_skill="value".')
        return weights

    def _fit(self, data: CrowdData) -> np.ndarray:
        weights = self._answer_weights(data)
        K = data.n_classes
        keep = None if weights is None else ~np.isnan(weights)
        item, worker, label = (np.asarray(a, dtype=np.int64) for a in (data.item, data.worker, data.label))
        if keep is not None and not keep.all():
            item, worker, label, weights = item[keep], worker[keep], label[keep], weights[keep]
        scores = np.bincount(item * K + label, weights=weights, minlength=data.n_items * K)
        scores = scores.reshape(data.n_items, K).astype(np.float64)
        tot = scores.sum(axis=1, keepdims=True)
        p = scores / np.where(tot == 0, 1.0, tot)
        winner = p.argmax(axis=1)
        self.tie_ = (p >= p.max(axis=1, keepdims=True) - 1e-12).sum(axis=1) > 1
        self.skills_ = _agreement_skills(data, item, worker, label, winner)
        if not self.soft:
            p = np.zeros_like(p)
            p[np.arange(len(p)), winner] = 1.0
        if self.use_gold:
            clamp_gold(p, data)
        return p


def _agreement_skills(data: CrowdData, item: np.ndarray, worker: np.ndarray, label: np.ndarray,
                      winner: np.ndarray) -> pd.Series:
    """Share of each worker's answers equal to the winning label (identical repeats counted once)."""
    K = data.n_classes
    key = np.unique((worker * data.n_items + item) * K + label)
    w = key // (data.n_items * K)
    i = (key // K) % data.n_items
    c = key % K
    n = np.bincount(w, minlength=data.n_workers).astype(np.float64)
    hit = np.bincount(w, weights=(winner[i] == c).astype(np.float64), minlength=data.n_workers)
    seen = n > 0
    idx = pd.Index(data.worker_ids[seen], name="worker")
    skills = pd.Series(hit[seen] / n[seen], index=idx, name="skill")
    try:
        return skills.sort_index()
    except TypeError:
        return skills


def expected_tie_accuracy(votes: np.ndarray, truth: np.ndarray) -> float:
    """Accuracy of majority vote when ties are broken uniformly at random, in expectation.

    Published majority-vote accuracies usually come from random tie-breaks;
    this gives the comparable number without randomness.
    """
    top = votes >= votes.max(axis=1, keepdims=True) - 1e-12
    return float((top[np.arange(len(truth)), truth] / top.sum(axis=1)).mean())
