"""The result of a KD-Crowd run (:class:`KDResult`): predictions, worker matrices, accuracies, history,
and its save/load (JSON + npz + weights-only torch file)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..errors import CrowdDataError
from .config import METHODS, KDConfig


def _plain_list(idx: pd.Index) -> list:
    return [v.item() if hasattr(v, "item") else v for v in pd.Index(idx).tolist()]


@dataclass
class KDResult:
    """Everything a KD-Crowd run produced (see docs/kd.md for every field).

    Attributes
    ----------
    classes, item_ids, worker_ids : pandas.Index
    config : KDConfig
    device : str, e.g. ``"cpu"`` or ``"cuda (NVIDIA H100)"``
    probas : dict method -> (N, K) float64, methods ``mv, ds, teacher, student, stage2``
        (``teacher``/``stage2``: per ``teacher_target``; ``student``: the student classifier).
    worker_matrices : dict ``ds, teacher, stage2`` -> (R, K, K) ``[r, true j, answer c]``
    targets : (N, K) the student's training targets (out-of-fold when ``cross_fit_folds > 1``)
    history : list of progress events; timings : seconds per stage (and ``total``)
    train_accuracy : accuracy on the items with gold, per method (empty without gold)
    test_accuracy : accuracy of the teacher/student/stage2 classifiers on the test items (when labelled)
    valid_accuracy : best validation accuracy per trained model (when validation data was given)
    test_probas : model -> (n_test, K); test_ids : pandas.Index or None
    forget_rate : the forget rate the student used (0 unless it used small-loss)
    robust : the robust technique the student used (what ``"auto"`` chose)
    final : the recommended model, ``teacher``, ``student`` or ``stage2`` (:mod:`.recommend`)
    oof_probas : (N, K) or None, out-of-fold classifier probabilities: each item predicted by the cross-fit
        teacher fold model that never saw its answers (``cross_fit_folds > 1``); saved as ``oof_probas`` in
        ``arrays.npz``, used by ``kdcrowd items --run`` as the second opinion
    final_model : how it was chosen: ``name``, ``criterion`` (``"validation accuracy"``, ``"held-out answer
        likelihood"`` or ``"none"``), ``scores`` per model, ``note`` (a plain sentence, saying when the student or
        stage 2 did not beat the teacher), ``test_accuracy`` (when the test split is labelled)
    """

    classes: pd.Index
    item_ids: pd.Index
    worker_ids: pd.Index
    config: KDConfig
    device: str
    probas: dict[str, np.ndarray]
    worker_matrices: dict[str, np.ndarray]
    history: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    train_accuracy: dict[str, float] = field(default_factory=dict)
    test_accuracy: dict[str, float] = field(default_factory=dict)
    valid_accuracy: dict[str, float] = field(default_factory=dict)
    test_probas: dict[str, np.ndarray] = field(default_factory=dict)
    test_ids: pd.Index | None = None
    targets: np.ndarray | None = None
    forget_rate: float = 0.0
    robust: str = ""
    model_states: dict[str, dict] = field(default_factory=dict, repr=False)
    n_features: int = 0
    final: str = "stage2"
    final_model: dict[str, Any] = field(default_factory=dict)
    oof_probas: np.ndarray | None = None

    def labels_frame(self) -> pd.DataFrame:
        """Per item (index = item id): ``mv, ds, teacher, student, stage2`` — the predicted label
        name of each method — then ``<method>_confidence`` (its max probability)."""
        cols: dict[str, Any] = {}
        present = [m for m in METHODS if m in self.probas]
        for m in present:
            cols[m] = self.classes.take(self.probas[m].argmax(1))
        for m in present:
            cols[f"{m}_confidence"] = self.probas[m].max(1)
        return pd.DataFrame(cols, index=pd.Index(self.item_ids, name="item"))

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable: settings, device, sizes, timings, accuracies."""
        return {"config": self.config.to_dict(), "device": self.device,
                "n_items": len(self.item_ids), "n_workers": len(self.worker_ids), "n_classes": len(self.classes),
                "timings": {k: float(v) for k, v in self.timings.items()},
                "train_accuracy": dict(self.train_accuracy), "test_accuracy": dict(self.test_accuracy),
                "valid_accuracy": dict(self.valid_accuracy), "forget_rate": float(self.forget_rate),
                "robust": self.robust, "final": self.final, "final_model": dict(self.final_model)}

    # ------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``result.json`` (ids, config, accuracies, history), ``arrays.npz`` and ``models.pt``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = self.summary()
        meta.update({"classes": _plain_list(self.classes), "item_ids": _plain_list(self.item_ids),
                     "worker_ids": _plain_list(self.worker_ids),
                     "test_ids": None if self.test_ids is None else _plain_list(self.test_ids),
                     "history": self.history, "n_features": int(self.n_features), "format": 1})
        (d / "result.json").write_text(json.dumps(meta, default=_json_default))
        arrays = {f"proba_{k}": v for k, v in self.probas.items()}
        arrays.update({f"wm_{k}": v for k, v in self.worker_matrices.items()})
        arrays.update({f"test_{k}": v for k, v in self.test_probas.items()})
        if self.targets is not None:
            arrays["targets"] = self.targets
        if self.oof_probas is not None:
            arrays["oof_probas"] = np.asarray(self.oof_probas, dtype=np.float64)
        # uncompressed: probabilities hardly compress, and zlib took seconds on 100k items (np.load reads both)
        np.savez(d / "arrays.npz", **arrays)
        if self.model_states:
            torch.save({k: {n: t.cpu() for n, t in v.items()} for k, v in self.model_states.items()}, d / "models.pt")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> KDResult:
        d = Path(directory)
        if not (d / "result.json").is_file():
            raise CrowdDataError(f"no KD-Crowd result in {d} (result.json missing).",
                                 hint="give the folder a run was saved to.")
        meta = json.loads((d / "result.json").read_text())
        z = np.load(d / "arrays.npz")
        probas = {k[6:]: z[k] for k in z.files if k.startswith("proba_")}
        wm = {k[3:]: z[k] for k in z.files if k.startswith("wm_")}
        test = {k[5:]: z[k] for k in z.files if k.startswith("test_")}
        states = {}
        if (d / "models.pt").is_file():
            states = torch.load(d / "models.pt", map_location="cpu", weights_only=True)
        return cls(classes=pd.Index(meta["classes"]), item_ids=pd.Index(meta["item_ids"]),
                   worker_ids=pd.Index(meta["worker_ids"]), config=KDConfig.from_dict(meta["config"]),
                   device=meta["device"], probas=probas, worker_matrices=wm, history=meta.get("history", []),
                   timings=meta.get("timings", {}), train_accuracy=meta.get("train_accuracy", {}),
                   test_accuracy=meta.get("test_accuracy", {}), valid_accuracy=meta.get("valid_accuracy", {}),
                   test_probas=test, test_ids=None if meta.get("test_ids") is None else pd.Index(meta["test_ids"]),
                   targets=z["targets"] if "targets" in z.files else None,
                   forget_rate=meta.get("forget_rate", 0.0), robust=meta.get("robust", ""), model_states=states,
                   n_features=int(meta.get("n_features", 0)), final=meta.get("final", "stage2"),
                   final_model=meta.get("final_model", {}),
                   oof_probas=z["oof_probas"] if "oof_probas" in z.files else None)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
