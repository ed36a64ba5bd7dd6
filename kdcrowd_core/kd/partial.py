"""What a cancelled or interrupted fit had finished, kept on disk.

When :meth:`KDCrowd.fit` stops early (the ``cancel`` event: the dashboard's
Cancel button, Ctrl-C on ``kdcrowd train``), the stages it finished are still
on the trainer: majority vote and Dawid-Skene (``mv_``, ``ds_``), the teacher
(``teacher_``, ``teacher_q_``) and the student (``student_``,
``student_probs_``).  :func:`partial_result` collects them into a
:class:`PartialResult`; :meth:`PartialResult.save` writes ``partial.json``,
``arrays.npz`` (``proba_<stage>``, ``wm_<stage>``) and ``models.pt`` (tensors
only: load with ``torch.load(..., weights_only=True)``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

#: Stages in order, with the words used in messages.
STAGE_WORDS = {"mv": "majority vote", "ds": "Dawid-Skene", "teacher": "teacher", "student": "student",
               "stage2": "stage 2"}


@dataclass
class PartialResult:
    """The finished stages of a fit that stopped early.

    ``finished``: stage keys in order (``mv``, ``ds``, ``teacher``, ``student``);
    ``interrupted_in``: the stage that was running (None when unknown);
    ``probas``: stage -> (N, K); ``worker_matrices``: stage -> (R, K, K);
    ``model_states``: ``teacher`` (classifier) / ``student`` -> state dict.
    """

    finished: list[str]
    interrupted_in: str | None
    classes: pd.Index
    item_ids: pd.Index
    worker_ids: pd.Index
    probas: dict[str, np.ndarray] = field(default_factory=dict)
    worker_matrices: dict[str, np.ndarray] = field(default_factory=dict)
    model_states: dict[str, dict] = field(default_factory=dict, repr=False)
    history: list[dict] = field(default_factory=list)

    def describe(self) -> str:
        """One sentence: where it stopped and which stages are kept."""
        where = f"during the {STAGE_WORDS.get(self.interrupted_in, self.interrupted_in)} stage" \
            if self.interrupted_in else "early"
        if not self.finished:
            return f"stopped {where}; no stage had finished, nothing to keep."
        kept = ", ".join(STAGE_WORDS.get(s, s) for s in self.finished)
        return f"stopped {where}; the finished stages are kept ({kept})."

    def labels_frame(self) -> pd.DataFrame:
        """Per item: the label of each finished stage, then ``<stage>_confidence``."""
        cols: dict[str, Any] = {}
        for m in self.probas:
            cols[m] = self.classes.take(np.asarray(self.probas[m]).argmax(1))
        for m in self.probas:
            cols[f"{m}_confidence"] = np.asarray(self.probas[m]).max(1)
        return pd.DataFrame(cols, index=pd.Index(self.item_ids, name="item"))

    def save(self, directory: str | Path) -> Path:
        """Write ``partial.json``, ``arrays.npz`` and (when a model finished) ``models.pt`` into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"status": "partial", "finished_stages": self.finished, "interrupted_in": self.interrupted_in,
                "message": self.describe(), "classes": _plain(self.classes), "item_ids": _plain(self.item_ids),
                "worker_ids": _plain(self.worker_ids), "history": self.history, "format": 1}
        arrays = {f"proba_{k}": np.asarray(v) for k, v in self.probas.items()}
        arrays.update({f"wm_{k}": np.asarray(v) for k, v in self.worker_matrices.items()})
        np.savez_compressed(d / "arrays.npz", **arrays)
        if self.model_states:
            torch.save(self.model_states, d / "models.pt")
        (d / "partial.json").write_text(json.dumps(meta, default=str))
        return d


def _plain(idx) -> list:
    return [v.item() if hasattr(v, "item") else v for v in pd.Index(idx).tolist()]


def _np(t) -> np.ndarray:
    return t.detach().double().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float64)


def partial_result(trainer) -> PartialResult | None:
    """The stages ``trainer`` (a :class:`KDCrowd` whose fit stopped early) finished; None before any data."""
    data = getattr(trainer, "data_", None)
    if data is None:
        return None
    ctx = getattr(trainer, "ctx_", None)
    history = list(getattr(getattr(ctx, "run", None), "history", []) or [])
    finished: list[str] = []
    probas: dict[str, np.ndarray] = {}
    wm: dict[str, np.ndarray] = {}
    states: dict[str, dict] = {}
    mv = getattr(trainer, "mv_", None)
    if mv is not None:
        finished.append("mv")
        probas["mv"] = np.asarray(mv.proba_array_, dtype=np.float64)
    ds = getattr(trainer, "ds_", None)
    if ds is not None:
        finished.append("ds")
        probas["ds"] = np.asarray(ds.proba_array_, dtype=np.float64)
        wm["ds"] = np.asarray(ds.worker_matrices_, dtype=np.float64)
    teacher, teacher_q = getattr(trainer, "teacher_", None), getattr(trainer, "teacher_q_", None)
    if teacher is not None and teacher_q is not None and ctx is not None:
        from .teacher import effective_worker_matrices
        finished.append("teacher")
        probas["teacher"] = _np(teacher_q)
        wm["teacher"] = _np(effective_worker_matrices(teacher, ctx.X, ctx.ans))
        states["teacher"] = {n: v.detach().cpu() for n, v in teacher.classifier.state_dict().items()}
    student, s_probs = getattr(trainer, "student_", None), getattr(trainer, "student_probs_", None)
    if student is not None and s_probs is not None:
        finished.append("student")
        probas["student"] = _np(s_probs)
        states["student"] = {n: v.detach().cpu() for n, v in student.state_dict().items()}
    running = [e.get("stage") for e in history if e.get("stage") not in (None, "done")]
    interrupted = running[-1] if running else None
    if interrupted in finished and history and history[-1].get("stage_progress") in (1, 1.0):
        nxt = [s for s in STAGE_WORDS if s not in finished]
        interrupted = nxt[0] if nxt else None
    return PartialResult(finished=finished, interrupted_in=interrupted, classes=data.classes,
                         item_ids=data.item_ids, worker_ids=data.worker_ids, probas=probas,
                         worker_matrices=wm, model_states=states, history=history)
