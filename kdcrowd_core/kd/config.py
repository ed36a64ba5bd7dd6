"""KD-Crowd settings: :class:`KDConfig` (defaults chosen by measurement, docs/kd.md) and the choices
the trainer accepts.  Settings that a search measured and did not adopt are grouped at the end of
:class:`KDConfig` under *experimental* (``EXPERIMENTAL_SETTINGS``, ``EXPERIMENTAL_ROBUST``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import CrowdDataError
from ..models import available_crowd_models

#: Registered teacher names (crowd models), default first.
TEACHERS: list[str] = ["aggnet"] + [t for t in available_crowd_models() if t != "aggnet"]
#: Distillation losses of the student.
DISTILL_LOSSES: list[str] = ["mig-kl", "mig-pearson", "mig-hellinger", "kl", "ce"]
#: Noise-model-free robust techniques of the student.
ROBUST_METHODS: list[str] = ["auto", "small-loss", "none", "gce", "co-teaching", "elr", "consistency",
                             "agreement"]
#: Robust techniques that were measured and not adopted (kept for experiments; docs/kd.md).
EXPERIMENTAL_ROBUST: tuple[str, ...] = ("gce", "co-teaching", "elr", "consistency", "agreement")
#: Candidates ``robust="auto"`` chooses between on the validation data (the first when there is none).
AUTO_ROBUST_CANDIDATES: tuple[str, ...] = ("none", "small-loss")
#: From this many items on, the cross-fit uses ``KDConfig.cross_fit_folds_large`` folds (when fewer).
LARGE_N_ITEMS = 50_000
#: Stages in order (progress events' ``stage``).
STAGES: tuple[str, ...] = ("mv", "ds", "teacher", "student", "stage2", "done")
METHODS: tuple[str, ...] = ("mv", "ds", "teacher", "student", "stage2")
MODELS: tuple[str, ...] = ("teacher", "student", "stage2")
#: Fields of :class:`KDConfig` that were measured and not adopted (kept for experiments; docs/kd.md).
EXPERIMENTAL_SETTINGS: tuple[str, ...] = (
    "gce_q", "elr_beta", "elr_lambda", "consistency_weight", "consistency_noise", "mig_marginal", "mig_temperature",
    "student_ensemble", "student_feature_noise", "student_input_dropout", "student_mixup", "student_schedule",
    "student_weight_decay", "average_last", "optimizer", "schedule")


@dataclass
class KDConfig:
    """Every setting of a KD-Crowd run (JSON round trip: :meth:`to_dict` / :meth:`from_dict`).

    Teacher
    -------
    teacher : str
        Crowd model: ``"aggnet"`` (EM with closed-form worker matrices), ``"prob-transition"``
        (DS-initialised per-worker matrices), ``"crowdlayer-mw"``, ``"crowdlayer-vw"``,
        ``"crowdlayer-vb"``, ``"crowdlayer-vw+b"``, ``"conal"``.
    teacher_target : str
        ``"posterior"`` (classifier times the worker matrices of the item's answers) or
        ``"classifier"`` (the teacher's classifier alone).
    cross_fit_folds : int
        ``k > 1``: out-of-fold teacher targets from ``k`` extra teachers (each trained
        without one fold); ``0`` or ``1``: the full teacher's in-sample targets.
    cross_fit_folds_large : int
        Folds used instead (when fewer) from ``LARGE_N_ITEMS`` (50,000) items on, in the teacher stage and
        the next rounds: default 3 (fold models on two thirds of the items).  On the simulated 100,000-item
        crowd of issue 11 (3 seeds) 3 folds gave the same test accuracy as 5 (stage 2 +0.0004, student
        -0.0007 on average; standard error about 0.003) in about 70 % of the CPU time (docs/kd.md).  ``0`` =
        ``cross_fit_folds`` at every size.  Use :meth:`KDConfig.folds_for`.
    trace_lambda : float
        Trace regulariser weight of ``prob-transition`` (``lambda * mean_r trace(T_r)``).
    conal_beta : float
        CoNAL's ``beta`` (penalty ``-beta sum_r ||W_r - W_c||``).
    aggnet_alpha : float
        Smoothing of AggNet's closed-form worker matrices.
    ds_alpha : float
        Smoothing of the Dawid-Skene run that initialises the teacher.
    use_gold : bool
        Use the data's gold labels for training (DS clamps them; teacher targets are
        clamped to them).  Default False: gold only measures accuracy.

    Student
    -------
    soft_targets : bool
        Train on the teacher's probabilities (True) or on its argmax labels (False).
    distill : str
        ``"mig-kl" | "mig-pearson" | "mig-hellinger"`` (MIG^f), ``"kl"`` (Hinton, with
        ``temperature``) or ``"ce"`` (cross-entropy to the targets).
    temperature : float
        Temperature of ``"kl"``.
    robust : str
        ``"auto"`` (train one student per technique in ``AUTO_ROBUST_CANDIDATES`` = none, small-loss
        and keep the one with the best validation accuracy; ``"none"`` when no validation data is
        given), ``"none"``, ``"small-loss"`` (keep the items with the smallest CE to the target's
        argmax; the distillation loss is computed on the kept items only), or one of the experimental
        techniques ``EXPERIMENTAL_ROBUST`` (documented under *Experimental* below).
    forget_rate : float or None
        Final fraction forgotten by ``"small-loss"``; ``None`` = share of items where the
        targets' argmax disagrees with majority vote.
    forget_ramp_epochs : int
        Epochs over which the forget rate ramps up from 0 (Co-teaching schedule).

    Rounds
    ------
    rounds : int
        Stage-1/stage-2 rounds.  In round ``r > 1`` the previous stage-2 crowd model is the teacher:
        new out-of-fold targets come from crowd models trained (like stage 2, with the previous
        student's predictions, weight ``stage2_lambda``) on the other folds, then a new student and
        a new stage 2 (warm-started from the previous stage 2).  ``1`` = the plain pipeline; default 2
        (chosen on validation accuracy, docs/kd.md).

    Stage 2
    -------
    stage2_lambda : float
        Weight of ``CE(p(x_i), s_i)`` next to the crowd NLL.
    stage2_warm_start : bool
        Start from the teacher (True) or from a fresh crowd model (False).

    Optimisation and model
    ----------------------
    epochs_teacher, epochs_student, epochs_stage2 : int
    lr : float
        Learning rate of the classifiers.
    lr_transition : float
        Learning rate of the worker (noise-model) parameters.
    weight_decay : float
    batch_size : int
        Items per mini-batch; ``0`` = automatic (``clip(N // 16, 64, 4096)``).
    classifier : str
        Head: ``"mlp"`` or ``"linear"``.
    hidden, depth, dropout, norm :
        MLP width, hidden layers, dropout, normalisation (``"none" | "batch" | "layer"``).
    patience : int
        With validation data: stop a stage after this many epochs without a better
        validation accuracy (0 = never stop early; the best epoch is kept either way).
    seed : int
        Seeds every random source (deterministic on CPU).
    device : str
        ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    amp : bool
        bfloat16 autocast on CUDA (ignored elsewhere).
    num_threads : int
        ``torch.set_num_threads`` during ``fit`` on CPU; 0 = at the start of every stage, torch's setting capped
        at the cores idle at that moment (a busy machine makes multi-threaded small ops far slower).
    parallel_jobs : int
        Independent trainings (the full-data and cross-fit teachers, the next round's fold models, the two test
        baselines) run this many at a time on the CPU, one thread each (kd/jobs.py); 0 (default) = the cores
        idle when the group starts (capped like ``num_threads``).  Each job draws its batch order and dropout
        from its own generator, so the result is the same for every value.  1 under ``--distributed`` and
        on a GPU.

    Recommended model
    -----------------
    select_holdout : float
        Without validation data, this share of the answers (at most one per item with >= 2 answers) is held
        out of training, and the recommended model is the one whose classifier gives those answers the highest
        likelihood (:mod:`.recommend`); ``0`` (default) = train on every answer and recommend stage 2, which was
        the best without validation data in 6/6 measured runs while the likelihood picked the worst model in 5/6
        (docs/kd.md).  With validation data nothing is held out: the best validation accuracy decides.

    Experimental: measured and not adopted
    --------------------------------------
    Settings and choices that a search measured (docs/kd.md, docs/benchmarks_kd.md) and did not
    make the default.  They stay available for experiments; ``EXPERIMENTAL_SETTINGS`` lists the fields.

    robust = "gce" | "co-teaching" | "elr" | "consistency" | "agreement"
        ``"gce"`` (generalized cross-entropy replaces CE/KL; with MIG^f it is added to it),
        ``"co-teaching"`` (two students, each trained on the small-loss items of the other, same
        forget-rate schedule as small-loss; the first one is kept), ``"elr"`` (early-learning
        regularisation: the distillation loss plus ``elr_lambda * log(1 - <p_i, t_i>)`` with ``t_i`` a
        running average, weight ``elr_beta``, of the student's own predictions on item i; no item is
        dropped), ``"consistency"`` (the ``forget_rate`` share of items whose target is least confident is
        treated as unlabeled: no distillation loss, only a consistency loss, weight ``consistency_weight``,
        between the student's predictions on two noised copies (Gaussian, std ``consistency_noise``) of
        every item), ``"agreement"`` (each item's distillation loss is weighted by how many of its answers
        agree with the target's argmax, ``(agree + 1) / (answers + 2)``, normalised to mean 1; MIG^f weights
        its joint term).
    consistency_weight, consistency_noise : float
        Weight of the consistency loss (mean squared difference of the two noised copies' probabilities,
        summed over classes) and the noise std (standardised features) of ``"consistency"``.
    elr_beta, elr_lambda : float
        Running-average weight and strength of ``"elr"`` (the paper's CIFAR-10 values: 0.7 and 3).
    gce_q : float
        ``q`` of GCE.
    mig_marginal : str
        Marginal pairs of MIG^f: ``"batch"`` (the ``B (B - 1)`` off-diagonal pairs of the mini-batch,
        as in Max-MIG) or ``"all"`` (each batch item against the targets of every training item).
    mig_temperature : float
        MIG^f targets are sharpened (``< 1``) or softened (``> 1``): ``q ∝ q^(1 / T)``.
    student_ensemble : int
        Number of students (different initialisations and batch orders) whose probabilities are
        averaged into the student classifier (an :class:`~kdcrowd_core.models.heads.EnsembleHead`).
    student_feature_noise, student_input_dropout : float
        "Noised student": Gaussian noise (std, on standardised features) and dropout on the
        student's inputs during training.
    student_mixup : float
        Mixup in the student: ``alpha`` of the ``Beta(alpha, alpha)`` mixing weight (``lam`` is
        folded to ``max(lam, 1 - lam)``); inputs and targets of each mini-batch are mixed with a
        permutation of the batch.  ``0`` = off.
    student_schedule : str
        Student learning-rate schedule: ``"constant"`` or ``"cosine"`` (cosine annealing to 0 over
        ``epochs_student``).
    student_weight_decay : float or None
        Adam weight decay of the student; ``None`` = ``weight_decay``.
    optimizer, schedule : str
        Optimiser of every stage (``"adam"``, ``"adamw"``, ``"radam"``) and its learning-rate schedule
        (``"constant"``, or ``"cosine"``: annealed to 0 over the stage's epochs).  The annot-mix paper's
        settings (radam, cosine, lr 1e-2, hidden 256, depth 2, batch norm) were measured for every method
        (sixth search, docs/kd_search_history.md) and not adopted.
    average_last : int
        ``0`` (default): every stage keeps its epoch with the best validation accuracy.  ``k > 0``: every
        stage ends with the uniform average of the weights of its last ``k`` epochs (weight averaging,
        no epoch picked on validation).
    """

    teacher: str = "aggnet"
    teacher_target: str = "posterior"
    cross_fit_folds: int = 5
    cross_fit_folds_large: int = 3
    trace_lambda: float = 0.0
    conal_beta: float = 1e-5
    aggnet_alpha: float = 0.01
    ds_alpha: float = 0.01
    use_gold: bool = False
    soft_targets: bool = True
    distill: str = "mig-kl"
    temperature: float = 1.0
    robust: str = "auto"
    forget_rate: float | None = None
    forget_ramp_epochs: int = 10
    rounds: int = 2
    stage2_lambda: float = 1.0
    stage2_warm_start: bool = True
    epochs_teacher: int = 50
    epochs_student: int = 50
    epochs_stage2: int = 30
    lr: float = 1e-3
    lr_transition: float = 1e-2
    weight_decay: float = 0.0
    batch_size: int = 0
    classifier: str = "mlp"
    hidden: int = 128
    depth: int = 1
    dropout: float = 0.5
    norm: str = "none"
    patience: int = 0
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    num_threads: int = 0
    parallel_jobs: int = 0
    select_holdout: float = 0.0
    # ---- experimental: measured and not adopted (EXPERIMENTAL_SETTINGS; docs/kd.md) ----
    gce_q: float = 0.7
    elr_beta: float = 0.7
    elr_lambda: float = 3.0
    consistency_weight: float = 1.0
    consistency_noise: float = 0.3
    mig_marginal: str = "batch"
    mig_temperature: float = 1.0
    student_ensemble: int = 1
    student_feature_noise: float = 0.0
    student_input_dropout: float = 0.0
    student_mixup: float = 0.0
    student_schedule: str = "constant"
    student_weight_decay: float | None = None
    average_last: int = 0
    optimizer: str = "adam"
    schedule: str = "constant"

    def folds_for(self, n_items: int) -> int:
        """Cross-fit folds for ``n_items`` items (0 = no cross-fit): ``cross_fit_folds``, or
        ``cross_fit_folds_large`` when fewer and ``n_items >= LARGE_N_ITEMS``."""
        k = int(self.cross_fit_folds)
        if n_items >= LARGE_N_ITEMS and self.cross_fit_folds_large > 1:
            k = min(k, int(self.cross_fit_folds_large))
        return k if k > 1 else 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> KDConfig:
        d = dict(d or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise CrowdDataError(f"unknown KD-Crowd settings {unknown}.", hint=f"valid settings: {sorted(names)}.")
        return cls(**d).validate()

    def validate(self) -> KDConfig:
        """Check every choice; raise CrowdDataError naming the bad setting."""
        def bad(name, msg):
            raise CrowdDataError(f"setting {name}={getattr(self, name)!r}: {msg}")
        t = str(self.teacher).strip().lower().replace("_", "-")
        if t not in TEACHERS:
            bad("teacher", f"choose one of {TEACHERS}.")
        self.teacher = t
        if self.teacher_target not in ("posterior", "classifier"):
            bad("teacher_target", "choose 'posterior' or 'classifier'.")
        if self.distill not in DISTILL_LOSSES:
            bad("distill", f"choose one of {DISTILL_LOSSES}.")
        if self.robust not in ROBUST_METHODS:
            bad("robust", f"choose one of {ROBUST_METHODS}.")
        if self.classifier not in ("mlp", "linear"):
            bad("classifier", "choose 'mlp' or 'linear'.")
        if self.norm not in ("none", "batch", "layer"):
            bad("norm", "choose 'none', 'batch' or 'layer'.")
        for n in ("epochs_teacher", "epochs_student", "epochs_stage2"):
            if int(getattr(self, n)) < 0:
                bad(n, "must be >= 0.")
        if self.epochs_teacher < 1:
            bad("epochs_teacher", "the teacher needs at least one epoch.")
        if self.cross_fit_folds < 0:
            bad("cross_fit_folds", "must be >= 0.")
        if self.cross_fit_folds_large < 0:
            bad("cross_fit_folds_large", "must be >= 0 (0 = cross_fit_folds at every size).")
        if isinstance(self.parallel_jobs, bool) or not isinstance(self.parallel_jobs, int) or self.parallel_jobs < 0:
            bad("parallel_jobs", "must be an integer >= 0 (0 = the idle cores).")
        if self.batch_size < 0:
            bad("batch_size", "must be >= 0 (0 = automatic).")
        if not (self.lr > 0 and self.lr_transition > 0):
            bad("lr", "learning rates must be > 0.")
        if self.forget_rate is not None and not 0.0 <= float(self.forget_rate) < 1.0:
            bad("forget_rate", "must lie in [0, 1) or be None (automatic).")
        if self.mig_marginal not in ("batch", "all"):
            bad("mig_marginal", "choose 'batch' or 'all'.")
        if self.mig_temperature <= 0:
            bad("mig_temperature", "must be > 0.")
        if int(self.student_ensemble) < 1:
            bad("student_ensemble", "must be >= 1.")
        if not (isinstance(self.student_mixup, (int, float)) and 0.0 <= float(self.student_mixup) <= 100.0):
            bad("student_mixup", "must be a number in [0, 100] (0 = no mixup).")
        if self.optimizer not in ("adam", "adamw", "radam"):
            bad("optimizer", "choose 'adam', 'adamw' or 'radam'.")
        if self.schedule not in ("constant", "cosine"):
            bad("schedule", "choose 'constant' or 'cosine'.")
        if self.student_schedule not in ("constant", "cosine"):
            bad("student_schedule", "choose 'constant' or 'cosine'.")
        if self.student_weight_decay is not None and not float(self.student_weight_decay) >= 0.0:
            bad("student_weight_decay", "must be >= 0 or None (= weight_decay).")
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            bad("rounds", "must be an integer >= 1.")
        if not 0 < self.gce_q <= 1:
            bad("gce_q", "must lie in (0, 1].")
        if not 0 <= self.elr_beta < 1:
            bad("elr_beta", "must lie in [0, 1).")
        if not self.elr_lambda >= 0:
            bad("elr_lambda", "must be >= 0.")
        if not self.consistency_weight >= 0:
            bad("consistency_weight", "must be >= 0.")
        if not self.consistency_noise >= 0:
            bad("consistency_noise", "must be >= 0.")
        if self.temperature <= 0:
            bad("temperature", "must be > 0.")
        if not 0 <= self.dropout < 1:
            bad("dropout", "must lie in [0, 1).")
        if self.hidden < 1:
            bad("hidden", "must be >= 1.")
        if not (isinstance(self.select_holdout, (int, float)) and 0.0 <= float(self.select_holdout) < 0.5):
            bad("select_holdout", "must lie in [0, 0.5) (0 = hold no answers out).")
        if isinstance(self.average_last, bool) or not isinstance(self.average_last, int) or self.average_last < 0:
            bad("average_last", "must be an integer >= 0 (0 = keep the best epoch).")
        return self
