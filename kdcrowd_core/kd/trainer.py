"""The KD-Crowd trainer (:class:`KDCrowd`): checks the inputs, runs stage 0 (majority vote, Dawid-Skene),
the teacher, the student and stage 2 (``rounds`` times), collects the :class:`~.result.KDResult`, predicts,
saves and loads.  Each stage lives in its own module (:mod:`.teacher`, :mod:`.student`, :mod:`.stage2`)."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..data import CrowdData
from ..device import describe_device, resolve_device
from ..errors import CrowdDataError
from ..models import Head, build_crowd_model
from ..models.crowd import CrowdModel
from . import baselines as _baselines
from . import recommend as _recommend
from . import stage2 as _stage2
from . import student as _student
from . import teacher as _teacher
from .config import AUTO_ROBUST_CANDIDATES, KDConfig
from .context import _acc_np, _accuracy, _Answers, _Ctx, _logits, _make_head, _Run, _to_t
from .result import KDResult
from .teacher import effective_worker_matrices


class KDCrowd:
    """KD-Crowd trainer.  ``KDCrowd(cfg).fit(data, valid=..., test=..., callback=..., cancel=...) -> KDResult``.

    Fitted attributes: ``result_`` (KDResult), ``models_`` (dict ``teacher, student, stage2`` ->
    classifier :class:`~kdcrowd_core.models.heads.Head`), ``teacher_``, ``stage2_`` (crowd models), ``device_``.

    ``test_baselines`` (class attribute, default True): with a labelled test split, also train the student's
    head on majority-vote and Dawid-Skene labels and score them there (``test_accuracy["mv"]``, ``["ds"]``).
    """

    test_baselines: bool = True
    #: a :class:`~.distributed.DataParallel` for data-parallel training (``kdcrowd train --distributed``)
    data_parallel = None

    def __init__(self, config: KDConfig | dict | None = None, **overrides):
        if config is None:
            config = KDConfig()
        elif isinstance(config, dict):
            config = KDConfig.from_dict(config)
        if overrides:
            config = KDConfig.from_dict({**config.to_dict(), **overrides})
        self.config = config.validate()
        self.models_: dict[str, Head] = {}

    # ----------------------------------------------------------------- checks
    @staticmethod
    def _check_data(data: CrowdData) -> None:
        if not isinstance(data, CrowdData):
            raise CrowdDataError(f"expected CrowdData, got {type(data).__name__}.",
                                 hint="read the answers with kdcrowd_core.io or build a CrowdData.")
        if data.features is None:
            raise CrowdDataError("KD-Crowd needs item features, and these answers have none.",
                                 hint="attach a feature table (one row per item) with CrowdData.with_features.")
        if data.n_items < 4:
            raise CrowdDataError(f"KD-Crowd needs at least 4 items, got {data.n_items}.")
        X = data.features
        if X.ndim != 2 or X.shape[0] != data.n_items or not np.all(np.isfinite(X)):
            raise CrowdDataError("features must be a finite (n_items, d) array.")

    @staticmethod
    def _split(name, split, d: int, K: int, need_y: bool):
        if split is None:
            return None, None
        if not isinstance(split, (tuple, list)) or len(split) < 2:
            raise CrowdDataError(f"{name} must be a tuple (X, y{', ids' if name == 'test' else ''}).")
        X = np.asarray(split[0], dtype=np.float32)
        y = None if split[1] is None else np.asarray(split[1], dtype=np.int64)
        if X.ndim != 2 or X.shape[1] != d:
            raise CrowdDataError(f"{name} features must have shape (n, {d}), got {X.shape}.",
                                 hint="use the same feature columns as the training items.")
        if not np.all(np.isfinite(X)):
            raise CrowdDataError(f"{name} features contain NaN or infinite values.")
        if y is not None:
            if y.shape != (X.shape[0],):
                raise CrowdDataError(f"{name} labels must be one class code per row ({X.shape[0]}).")
            if y.size and (y.max() >= K or y.min() < -1):
                raise CrowdDataError(f"{name} labels must be class codes in [0, {K}) (or -1 for unknown).")
        elif need_y:
            raise CrowdDataError(f"{name} needs labels.")
        return X, y

    # -------------------------------------------------------------------- fit
    def fit(self, data: CrowdData, valid=None, test=None, callback: Callable[[dict], None] | None = None,
            cancel: threading.Event | None = None) -> KDResult:
        """Run the three stages; see the module docstring.

        Parameters
        ----------
        data : CrowdData with ``features`` (N, d) and optional ``gold`` (N,) (-1 = unknown).
        valid : (X_valid (n, d), y_valid (n,) codes) or None — used ONLY for model selection
            (each stage keeps its epoch with the best validation accuracy) and early stopping.
        test : (X_test (m, d), y_test codes or None, test_ids) or None — predicted and scored, never selected on.
        callback : called with every progress event (a dict, see KD_API.md).
        cancel : a threading.Event; once set, fit raises TrainingCancelled within one mini-batch.
        """
        cfg = self.config.validate()
        self._check_data(data)
        K, d = data.n_classes, data.features.shape[1]
        Xv, yv = self._split("valid", valid, d, K, need_y=True)
        Xt, yt = self._split("test", test, d, K, need_y=False)
        test_ids = None
        if test is not None:
            test_ids = pd.Index(test[2]) if len(test) > 2 and test[2] is not None else pd.RangeIndex(len(Xt))
        dev = resolve_device(cfg.device)
        old_threads = torch.get_num_threads()
        if cfg.num_threads > 0 and dev.type == "cpu":
            torch.set_num_threads(int(cfg.num_threads))
        try:
            self.heldout_ = None
            if Xv is None and cfg.select_holdout > 0:   # label-free choice of the recommended model
                data, self.heldout_ = _recommend.hold_out_answers(data, cfg.select_holdout, cfg.seed)
            if self.data_parallel is None:
                return self._fit(data, cfg, dev, Xv, yv, Xt, yt, test_ids, callback, cancel)
            from .distributed import check_config, weights_digest
            check_config(cfg)
            with self.data_parallel.active():
                result = self._fit(data, cfg, dev, Xv, yv, Xt, yt, test_ids, callback, cancel)
            self.data_parallel.weights_digest = weights_digest(result.model_states)
            return result
        finally:
            if dev.type == "cpu":
                torch.set_num_threads(old_threads)

    def _fit(self, data, cfg, dev, Xv, yv, Xt, yt, test_ids, callback, cancel) -> KDResult:
        folds = cfg.folds_for(data.n_items)
        n_students = len(AUTO_ROBUST_CANDIDATES) if (cfg.robust == "auto" and Xv is not None) else 1
        per_round = cfg.epochs_student * n_students * cfg.student_ensemble + cfg.epochs_stage2
        total = (2 + cfg.epochs_teacher * (1 + folds) + per_round
                 + (cfg.rounds - 1) * (cfg.epochs_teacher * max(folds, 0) + per_round))
        if self.test_baselines and Xt is not None and yt is not None and np.any(yt >= 0):
            total += len(_baselines.BASELINES) * cfg.epochs_student * cfg.student_ensemble
        self.prepare(data, dev, Xv, yv, _Run(callback, cancel, total))
        self.run_teacher()
        student, s_probs = self.run_student()
        prev = None          # the model stage 2 starts from: the teacher in round 1, then the last stage 2
        for r in range(2, cfg.rounds + 1):
            if folds:        # stage 2 of round r - 1 needs nothing of round r: it trains beside its fold models
                stage2, stage2_q = self._stage2_beside_next_round(s_probs, prev, r)
            else:            # round r's targets are stage 2's posteriors
                stage2, stage2_q = self.run_stage2(s_probs, teacher=prev)
                self.ctx_.run.round = r
                self.run_round_targets(stage2, s_probs)
            self.ctx_.run.round = r
            student, s_probs = self.run_student()
            prev = stage2
        stage2, stage2_q = self.run_stage2(s_probs, teacher=prev)
        return self._collect(student, s_probs, stage2, stage2_q, Xt, yt, test_ids)

    def _stage2_beside_next_round(self, s_probs: torch.Tensor, prev: CrowdModel | None, r: int):
        """Stage 2 of round ``r - 1`` and the fold models of round ``r`` (both need only the student's
        predictions ``s_probs``) as one group of jobs (:mod:`.jobs`).  Sets ``targets_``; returns stage 2's
        ``(model, posteriors)``."""
        from .jobs import STAGE2_JOBS, run_jobs
        t = time.perf_counter()
        s2_job, s2_model = _stage2.stage2_job(self, s_probs, prev)
        name = (prev if prev is not None else self.teacher_).name
        fold_jobs, finish = _teacher.round_target_jobs(self, name, s_probs, round_=r)
        out = run_jobs(self.ctx_, STAGE2_JOBS, fold_jobs + [(s2_job, [s2_model], (STAGE2_JOBS, 0, r - 1))])
        self.targets_ = finish(out[:-1])
        self.timings_["rounds"] = self.timings_.get("rounds", 0.0) + time.perf_counter() - t
        return out[-1]

    # ------------------------------------------------------- stages, reusable
    def prepare(self, data: CrowdData, dev: torch.device, Xv=None, yv=None, run: _Run | None = None) -> _Ctx:
        """Stage 0: majority vote, Dawid-Skene, tensors on the device (sets ``mv_``, ``ds_``, ``ctx_``)."""
        from ..inference import DawidSkene, MajorityVote
        cfg = self.config
        run = run or _Run(None, None, 1)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % (2 ** 32))
        run.check()
        self.data_, self.timings_ = data, {}
        t = time.perf_counter()
        self.mv_ = MajorityVote(soft=True, use_gold=cfg.use_gold).fit(data)
        self.timings_["mv"] = time.perf_counter() - t
        run.event("mv", 1, 1, None, message="majority vote")
        t = time.perf_counter()
        self.ds_ = DawidSkene(alpha=cfg.ds_alpha, use_gold=cfg.use_gold,
                              device=str(dev) if dev.type != "mps" else "cpu").fit(data)
        self.timings_["ds"] = time.perf_counter() - t
        gold_np = data.gold if data.has_gold else None
        run.event("ds", 1, 1, None, _acc_np(self.ds_.proba_array_, gold_np), message="Dawid-Skene")
        gen = torch.Generator().manual_seed(int(cfg.seed))
        self.ctx_ = _Ctx(X=_to_t(data.features, dev), ans=_Answers.from_data(data, dev), K=data.n_classes,
                         R=data.n_workers, cfg=cfg, dev=dev,
                         gold=None if gold_np is None else _to_t(gold_np, dev, torch.long),
                         Xv=None if Xv is None else _to_t(Xv, dev),
                         yv=None if yv is None else _to_t(yv, dev, torch.long), run=run, gen=gen,
                         dp=self.data_parallel, max_threads=torch.get_num_threads() if cfg.num_threads == 0 else 0)
        if self.data_parallel is not None:
            self.data_parallel.gen, run.dp = gen, self.data_parallel
        self.device_ = dev
        return self.ctx_

    def new_crowd_model(self, teacher: str | None = None) -> CrowdModel:
        """A fresh crowd model (DS-initialised where it applies), standardiser fitted on the items."""
        cfg, ctx = self.config, self.ctx_
        head = _make_head(cfg, ctx.X.shape[1], ctx.K).to(ctx.dev)
        m = build_crowd_model(teacher or cfg.teacher, head, ctx.R, ctx.K, init_matrices=self.ds_.worker_matrices_,
                              trace_lambda=cfg.trace_lambda, conal_beta=cfg.conal_beta,
                              alpha=cfg.aggnet_alpha).to(ctx.dev)
        ctx.fit_standardizer(m.classifier)
        return m

    def run_teacher(self, teacher: str | None = None) -> torch.Tensor:
        """Stage 1a (:func:`.teacher.run_teacher`): the full-data teacher and the student's targets."""
        return _teacher.run_teacher(self, teacher)

    def run_round_targets(self, stage2: CrowdModel, s_probs: torch.Tensor) -> torch.Tensor:
        """Targets of the next round (:func:`.teacher.run_round_targets`)."""
        return _teacher.run_round_targets(self, stage2, s_probs)

    def auto_forget_rate(self, targets: torch.Tensor | None = None) -> float:
        """Share of items whose target's argmax differs from majority vote (:func:`.student.auto_forget_rate`)."""
        return _student.auto_forget_rate(self, targets)

    def run_student(self, targets: torch.Tensor | None = None, distill: str | None = None,
                    robust: str | None = None, forget_rate: float | None = None, epochs: int | None = None,
                    stage: str = "student"):
        """Stage 1b (:func:`.student.run_student`).  Returns ``(head, probabilities on the items (N, K))``
        (also kept as ``student_``, ``student_probs_``: a fit stopped later still has them, see :mod:`.partial`)."""
        self.student_, self.student_probs_ = _student.run_student(self, targets, distill, robust, forget_rate,
                                                                  epochs, stage)
        return self.student_, self.student_probs_

    def run_stage2(self, s_probs: torch.Tensor, teacher: CrowdModel | None = None):
        """Stage 2 (:func:`.stage2.run_stage2`).  Returns ``(model, posteriors)``."""
        return _stage2.run_stage2(self, s_probs, teacher)

    def _collect(self, student, s_probs, stage2, stage2_q, Xt, yt, test_ids) -> KDResult:
        cfg, ctx, data, run = self.config, self.ctx_, self.data_, self.ctx_.run
        teacher = self.teacher_
        gold_np = data.gold if data.has_gold else None
        dev = ctx.dev
        self.stage2_ = stage2
        self.models_ = {"teacher": teacher.classifier, "student": student, "stage2": stage2.classifier}
        np64 = lambda x: x.detach().double().cpu().numpy()
        probas = {"mv": self.mv_.proba_array_, "ds": self.ds_.proba_array_, "teacher": np64(self.teacher_q_),
                  "student": np64(s_probs), "stage2": np64(stage2_q)}
        wm = {"ds": np.asarray(self.ds_.worker_matrices_, dtype=np.float64),
              "teacher": np64(effective_worker_matrices(teacher, ctx.X, ctx.ans)),
              "stage2": np64(effective_worker_matrices(stage2, ctx.X, ctx.ans))}
        train_acc = {k: _acc_np(v, gold_np) for k, v in probas.items()} if gold_np is not None else {}
        test_probas, test_acc = {}, {}
        if Xt is not None:
            Xt_t = _to_t(Xt, dev)
            for k, mdl in self.models_.items():
                test_probas[k] = np64(F.softmax(_logits(mdl, Xt_t), 1))
            if yt is not None and np.any(yt >= 0):
                if self.test_baselines:   # same head on MV / DS labels (kd/baselines.py)
                    test_probas.update(_baselines.train_baselines(self, Xt))
                test_acc = {k: _acc_np(v, yt) for k, v in test_probas.items()}
        valid_acc = {}
        if ctx.Xv is not None:
            valid_acc = {k: _accuracy(m, ctx.Xv, ctx.yv) for k, m in self.models_.items()}
        timings = dict(self.timings_)
        timings["total"] = time.perf_counter() - run.t0
        result = KDResult(classes=data.classes, item_ids=data.item_ids, worker_ids=data.worker_ids, config=cfg,
                          device=describe_device(dev), probas=probas, worker_matrices=wm, history=run.history,
                          timings=timings, train_accuracy=train_acc, test_accuracy=test_acc,
                          valid_accuracy=valid_acc, test_probas=test_probas, test_ids=test_ids,
                          targets=np64(self.targets_), forget_rate=float(self.forget_rate_),
                          robust=self.robust_,
                          model_states={k: {n: v.detach().cpu() for n, v in m.state_dict().items()}
                                        for k, m in self.models_.items()},
                          n_features=int(ctx.X.shape[1]))
        if getattr(self, "oof_probs_", None) is not None:      # cross-fit teacher folds (CROWDLAB's second opinion)
            result.oof_probas = np64(self.oof_probs_)
        result.final, result.final_model = self._recommend(valid_acc)
        if result.final in test_acc:
            result.final_model["test_accuracy"] = test_acc[result.final]
        run.event("done", 1, 1, None, train_acc.get("stage2"), valid_acc.get("stage2"),
                  message=f"done in {timings['total']:.1f} s")
        result.history = run.history
        self.result_ = result
        return result

    def _recommend(self, valid_acc: dict) -> tuple[str, dict]:
        """The recommended model (:mod:`.recommend`): best validation accuracy, else best held-out answer
        likelihood, else stage 2."""
        held = getattr(self, "heldout_", None)
        if valid_acc:
            return _recommend.choose(valid_acc, "validation accuracy")
        if held is not None:
            T = self.ds_.worker_matrices_
            scores = {k: _recommend.heldout_log_likelihood(m, self.ctx_.X, held, T) for k, m in self.models_.items()}
            final, rec = _recommend.choose(scores, "held-out answer likelihood", higher="likelihood")
            rec["heldout_answers"] = int(len(held[0]))
            return final, rec
        return _recommend.choose({}, "none")

    # ---------------------------------------------------------------- predict
    def predict_proba(self, X: np.ndarray, model: str = "stage2") -> np.ndarray:
        """Class probabilities (n, K) float64 of new items from a trained classifier
        (``"stage2"`` (default), ``"student"`` or ``"teacher"``, or ``"final"``: the recommended one)."""
        if not self.models_:
            raise CrowdDataError("the trainer is not fitted.", hint="call fit() or KDCrowd.load(dir) first.")
        if model == "final":
            res = getattr(self, "result_", None)
            model = res.final if res is not None and res.final in self.models_ else "stage2"
        if model not in self.models_:
            raise CrowdDataError(f"unknown model {model!r}.", hint=f"choose one of {list(self.models_)}.")
        head = self.models_[model]
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != head.n_features:
            raise CrowdDataError(f"features must have shape (n, {head.n_features}), got {X.shape}.")
        if not np.all(np.isfinite(X)):
            raise CrowdDataError("features contain NaN or infinite values.")
        dev = next(head.parameters()).device
        return F.softmax(_logits(head, _to_t(X, dev)), 1).double().cpu().numpy()

    def predict(self, X: np.ndarray, model: str = "stage2") -> np.ndarray:
        """Predicted class codes (n,) (``result_.classes.take(...)`` gives names)."""
        return self.predict_proba(X, model).argmax(1)

    # ------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Save the result and the classifiers' weights (same layout as :meth:`KDResult.save`)."""
        if getattr(self, "result_", None) is None:
            raise CrowdDataError("the trainer is not fitted; nothing to save.")
        return self.result_.save(directory)

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> KDCrowd:
        """Restore a trainer able to predict (weights loaded with ``weights_only=True``)."""
        res = KDResult.load(directory)
        tr = cls(res.config)
        dev = resolve_device(device)
        if not res.model_states:
            raise CrowdDataError(f"no model weights in {directory} (models.pt missing).")
        K = len(res.classes)
        for k, st in res.model_states.items():
            head = _make_head(res.config, res.n_features, K, student=(k == "student")).to(dev)
            head.load_state_dict(st)
            head.eval()
            tr.models_[k] = head
        tr.result_ = res
        tr.device_ = dev
        return tr
