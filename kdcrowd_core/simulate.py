"""Synthetic crowds with known truth and known worker confusion matrices.

:func:`simulate_crowd` draws a labelling job end to end:

1. true classes ``y_i`` from a class prior (``N`` train items, ``n_test`` held-out items);
2. item features ``x_i`` from a class-conditional Gaussian mixture (unit-variance
   isotropic components around class means of norm ``3 / overlap``);
3. per item a *difficulty* ``1 - P(y_i | x_i)`` under that mixture (items near a
   class boundary are hard) and a *distractor* class drawn from the same
   posterior with the true class removed;
4. workers of six archetypes, each with a K x K confusion matrix
   ``T_r[j, c] = P(r answers c | r perceives class j)``;
5. for every item, ``n_i`` distinct workers drawn (without replacement) with
   probability proportional to their activity (Zipf or uniform);
6. every answer: the worker perceives the distractor with probability
   ``instance_noise * difficulty_i`` (else the true class) and answers from the
   perceived class's row of ``T_r``.

Everything is vectorised over answers (no Python loop per item or answer, no
items x workers array) and every random draw comes from one
``numpy.random.Generator`` seeded by ``seed``: the same arguments give the
same crowd, bit for bit.

Archetypes (see ``docs/simulator.md``):

- ``expert``: diagonal ~ ``expert_accuracy``; errors spread by a Dirichlet(1) draw.
- ``novice``: the same with ``novice_accuracy``.
- ``confuser``: expert-like, but swaps each class pair in ``confuser_pairs``:
  ``T[a, b] ~ U(0.6, 0.9)`` > ``T[a, a]`` and vice versa.
- ``spammer``: answers uniformly at random, ignoring the item (all rows ``1/K``).
- ``one_answer_spammer``: always gives the same single label (one column of ones).
- ``adversary``: below chance on purpose: ``T[j, j] ~ U(0, 0.5/K)``, the rest
  spread evenly over the wrong classes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .data import NO_GOLD, CrowdData
from .errors import CrowdDataError

ARCHETYPES: tuple[str, ...] = ("expert", "novice", "confuser", "spammer", "one_answer_spammer", "adversary")
"""Names of the worker archetypes, in the order their matrices are drawn."""

DEFAULT_ARCHETYPES: dict[str, float] = {
    "expert": 0.3, "novice": 0.4, "confuser": 0.1, "spammer": 0.1,
    "one_answer_spammer": 0.05, "adversary": 0.05,
}
"""Archetype fractions used when ``archetypes=None``."""

MEAN_RADIUS = 3.0
"""Norm of the class means at ``overlap=1`` (unit-variance components)."""

_MTURK_ALPHABET = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


# --------------------------------------------------------------------------- result
@dataclass
class SimulatedCrowd:
    """A simulated labelling job with everything the generator knows.

    Attributes
    ----------
    data : CrowdData
        The crowd answers with user-facing ids and class names, ``features``
        (N x d float32, or None when ``n_features=0``) and ``gold`` (the true
        class for a random ``gold_fraction`` of items, ``-1`` elsewhere).
        Workers that drew no answer are not in it.
    truth : int64 array (N,)
        True class codes into ``data.classes`` for every item.
    true_matrices : float64 array (R, K, K)
        ``[r, j, c] = P(worker r answers c | true class j)`` as the generator
        used it.  With ``instance_noise > 0`` this is the *average effective*
        matrix ``A @ T_r``, where ``A[j] `` is the mean, over the items of true
        class ``j``, of the perception row ``(1 - rho_i) e_j + rho_i e_{d_i}``.
        Rows sum to 1; aligned with ``data.worker_ids``.
    base_matrices : float64 array (R, K, K)
        The archetype matrices ``T_r`` themselves (perceived class -> answer).
    archetype : array of str (R,)
        Archetype of each worker, aligned with ``data.worker_ids``.
    item_difficulty : float64 array (N,)
        ``1 - P(true class | x_i)`` under the generating mixture, in [0, 1).
    test_features : float32 array (n_test, d) or None
    test_truth : int64 array (n_test,)
    test_ids : pandas.Index (n_test,)
    params : dict
        The arguments of :func:`simulate_crowd` (JSON-friendly).
    """

    data: CrowdData
    truth: np.ndarray
    true_matrices: np.ndarray
    archetype: np.ndarray
    item_difficulty: np.ndarray
    test_features: np.ndarray | None
    test_truth: np.ndarray
    test_ids: pd.Index
    base_matrices: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)

    # ----------------------------------------------------------------- views
    @property
    def class_prior(self) -> np.ndarray:
        """Empirical class frequencies of the train items (K,)."""
        K = self.data.n_classes
        return np.bincount(self.truth, minlength=K) / max(len(self.truth), 1)

    def worker_accuracy(self) -> np.ndarray:
        """True accuracy per worker (R,): ``sum_j prior_j * true_matrices[r, j, j]``."""
        diag = np.diagonal(self.true_matrices, axis1=1, axis2=2)
        return diag @ self.class_prior

    def answers_frame(self) -> pd.DataFrame:
        """The answers as a long table with columns ``item, worker, label`` (user ids / names)."""
        d = self.data
        return pd.DataFrame({
            "item": d.item_ids.take(d.item),
            "worker": d.worker_ids.take(d.worker),
            "label": d.classes.take(d.label),
        })

    def truth_series(self) -> pd.Series:
        """True label name of every train item, indexed by item id."""
        return pd.Series(self.data.classes.take(self.truth), index=self.data.item_ids, name="label")

    def workers_frame(self) -> pd.DataFrame:
        """Per worker: ``archetype``, ``true_accuracy`` (prior-weighted diagonal of
        ``true_matrices``) and ``answers`` (count); indexed by worker id."""
        d = self.data
        return pd.DataFrame({
            "archetype": self.archetype,
            "true_accuracy": self.worker_accuracy(),
            "answers": d.answers_per_worker(),
        }, index=pd.Index(d.worker_ids, name="worker"))

    # ----------------------------------------------------------------- files
    def to_files(self, directory: str | Path, *, workers_file: str = "workers.csv",
                 float_decimals: int = 4, readme: str | None = None) -> dict[str, Path]:
        """Write the crowd as plain CSV files and a README.

        Files: ``answers.csv`` (item, worker, label), ``gold.csv`` (item, label; the
        gold subset), ``features.csv`` (item, f0..f{d-1}), ``test_features.csv``
        (item, f0..), ``test_gold.csv`` (item, label), ``truth.csv`` (item, label;
        every train item), ``workers_file`` (worker, archetype, true_accuracy,
        answers) and ``README.md`` (``readme`` text, or a generated description).
        Feature files are skipped when there are no features, test files when
        ``n_test == 0``.  Features are written with ``float_decimals`` decimals.

        Returns a dict file name -> path.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        d = self.data
        fmt = f"%.{int(float_decimals)}f"
        written: dict[str, Path] = {}

        def _write(name: str, frame: pd.DataFrame, **kw) -> None:
            p = out / name
            frame.to_csv(p, index=False, lineterminator="\n", **kw)
            written[name] = p

        _write("answers.csv", self.answers_frame())
        gm = d.gold_mask
        _write("gold.csv", pd.DataFrame({"item": d.item_ids[gm], "label": d.classes.take(d.gold[gm])}))
        _write("truth.csv", pd.DataFrame({"item": d.item_ids, "label": d.classes.take(self.truth)}))
        if d.features is not None:
            _write("features.csv", _features_frame(d.item_ids, d.features, d.feature_names), float_format=fmt)
        if len(self.test_ids):
            if self.test_features is not None:
                _write("test_features.csv", _features_frame(self.test_ids, self.test_features, d.feature_names),
                       float_format=fmt)
            _write("test_gold.csv", pd.DataFrame({"item": self.test_ids, "label": d.classes.take(self.test_truth)}))
        wf = self.workers_frame().reset_index()
        _write(workers_file, wf, float_format="%.4f")
        p = out / "README.md"
        p.write_text(readme if readme is not None else self._readme(written, workers_file), encoding="utf-8")
        written["README.md"] = p
        return written

    def _readme(self, written: Mapping[str, Path], workers_file: str) -> str:
        d = self.data
        counts = pd.Series(self.archetype).value_counts().reindex(list(ARCHETYPES)).dropna().astype(int)
        lines = [
            "# Simulated crowd (kdcrowd_core.simulate)", "",
            f"{d.n_items} items, {d.n_workers} workers, {d.n_answers} answers, {d.n_classes} classes "
            f"({', '.join(map(str, d.classes))}).", "",
            "Files:",
            "- `answers.csv`: one answer per row: item, worker, label.",
            "- `gold.csv`: true labels of a subset of items (item, label).",
            "- `truth.csv`: true labels of every item (for evaluation only).",
        ]
        if "features.csv" in written:
            lines.append(f"- `features.csv`: item, then {d.features.shape[1]} feature columns.")
        if "test_features.csv" in written:
            lines.append(f"- `test_features.csv` / `test_gold.csv`: {len(self.test_ids)} held-out items with no answers.")
        elif "test_gold.csv" in written:
            lines.append(f"- `test_gold.csv`: {len(self.test_ids)} held-out items.")
        lines.append(f"- `{workers_file}`: worker, archetype, true_accuracy, answers.")
        lines += ["", "Archetypes: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".", "",
                  "Generated with:", "", "```", json.dumps(self.params, indent=1, default=str), "```", ""]
        return "\n".join(lines)


def _features_frame(ids: pd.Index, X: np.ndarray, names: Sequence[str] | None) -> pd.DataFrame:
    names = list(names) if names is not None else [f"f{k}" for k in range(X.shape[1])]
    frame = pd.DataFrame(np.asarray(X, dtype=np.float64), columns=names)
    frame.insert(0, "item", np.asarray(ids))
    return frame


# --------------------------------------------------------------------------- ids
def mturk_like_ids(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct MTurk-looking worker ids: ``"A"`` + 13 characters of [0-9A-Z]."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        codes = rng.integers(0, 36, size=(n - len(ids), 13))
        for row in _MTURK_ALPHABET[codes]:
            s = "A" + "".join(row)
            if s not in seen:
                seen.add(s)
                ids.append(s)
    return ids


def _format_ids(fmt: str | Callable[[int], Any] | None, idx: np.ndarray, default_prefix: str,
                width: int) -> pd.Index:
    if fmt is None:  # vectorised: prefix + zero-padded number
        strings = getattr(np, "strings", np.char)  # numpy >= 2 / numpy 1.x
        digits = strings.zfill(idx.astype(f"<U{max(width, 1)}"), width)
        return pd.Index(strings.add(default_prefix, digits))
    if isinstance(fmt, str) and fmt == "int":
        return pd.Index(idx.astype(np.int64))
    if callable(fmt):
        return pd.Index([fmt(i) for i in idx.tolist()])
    if isinstance(fmt, str):
        if "{" not in fmt:
            raise CrowdDataError(f"id format {fmt!r} has no '{{}}' placeholder.",
                                 hint="use e.g. 'img_{:05d}', a callable, or 'mturk' for worker ids.")
        return pd.Index([fmt.format(i) for i in idx.tolist()])
    raise CrowdDataError(f"id format must be a str or a callable, got {type(fmt).__name__}.")


# --------------------------------------------------------------------------- helpers
def _as_range(value, name: str, lo: float = 0.0, hi: float = 1.0) -> tuple[float, float]:
    try:
        a, b = (float(value), float(value)) if np.isscalar(value) else (float(value[0]), float(value[1]))
    except (TypeError, ValueError, IndexError):
        raise CrowdDataError(f"{name} must be a number or a (low, high) pair, got {value!r}.") from None
    if not (lo <= a <= b <= hi):
        raise CrowdDataError(f"{name} must satisfy {lo} <= low <= high <= {hi}, got {value!r}.")
    return a, b


def _archetype_counts(fractions: Mapping[str, float], R: int) -> dict[str, int]:
    unknown = [k for k in fractions if k not in ARCHETYPES]
    if unknown:
        raise CrowdDataError(f"unknown archetypes {unknown}.", hint=f"use some of {list(ARCHETYPES)}.")
    f = np.array([float(fractions.get(k, 0.0)) for k in ARCHETYPES])
    if np.any(f < 0) or not np.isfinite(f).all() or f.sum() <= 0:
        raise CrowdDataError(f"archetype fractions must be >= 0 and not all zero, got {dict(fractions)}.")
    f = f / f.sum() * R
    base = np.floor(f).astype(int)
    rest = R - base.sum()
    order = np.argsort(-(f - base), kind="stable")
    base[order[:rest]] += 1
    return dict(zip(ARCHETYPES, base.tolist()))


def _dirichlet_rows(rng: np.random.Generator, shape: tuple[int, ...], concentration: float = 1.0) -> np.ndarray:
    g = rng.gamma(concentration, size=shape)
    s = g.sum(axis=-1, keepdims=True)
    s[s == 0] = 1.0
    return g / s


def _skilled_matrices(rng: np.random.Generator, n: int, K: int, acc: tuple[float, float]) -> np.ndarray:
    """n x K x K matrices with diagonal around U(acc) and Dirichlet(1)-spread errors."""
    if n == 0:
        return np.zeros((0, K, K))
    base = rng.uniform(acc[0], acc[1], size=(n, 1))
    diag = np.clip(base + rng.normal(0.0, 0.03, size=(n, K)), 0.0, 0.999)
    off = _dirichlet_rows(rng, (n, K, K - 1))
    T = np.empty((n, K, K))
    eye = np.eye(K, dtype=bool)
    T[:, ~eye] = (off * (1.0 - diag)[:, :, None]).reshape(n, K * (K - 1))
    T[:, eye] = diag
    return T


def _class_means(rng: np.random.Generator, K: int, d: int, radius: float) -> np.ndarray:
    """K class means of norm ``radius`` in R^d: orthogonal when d >= K, random directions otherwise."""
    Z = rng.normal(size=(max(d, K), K) if d >= K else (K, d))
    if d >= K:
        Q, Rm = np.linalg.qr(Z)  # d x K, orthonormal columns
        Q = Q * np.sign(np.where(np.diag(Rm) == 0, 1.0, np.diag(Rm)))
        M = Q.T
    else:
        M = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
    return radius * M


def _mixture_features(rng: np.random.Generator, means: np.ndarray, y: np.ndarray,
                      chunk: int = 262_144) -> np.ndarray:
    """float32 (n, d) draws ``means[y] + N(0, I)``, built in chunks of rows."""
    n, d = y.shape[0], means.shape[1]
    X = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, chunk):
        yy = y[s:s + chunk]
        X[s:s + chunk] = means[yy] + rng.normal(size=(yy.shape[0], d))
    return X


def _difficulty_and_distractor(rng: np.random.Generator, X: np.ndarray, means: np.ndarray,
                               log_prior: np.ndarray, truth: np.ndarray,
                               chunk: int = 262_144) -> tuple[np.ndarray, np.ndarray]:
    """Per item: difficulty ``1 - P(y_i | x_i)`` and a distractor class drawn from
    ``P(. | x_i)`` with the true class removed (unit-variance Gaussians around ``means``).

    Works in chunks of rows so that no more than ``chunk x K`` floats are alive.
    """
    N = X.shape[0]
    difficulty = np.empty(N)
    distractor = np.empty(N, dtype=np.int64)
    half_sq = 0.5 * np.einsum("kd,kd->k", means, means)
    for s in range(0, N, chunk):
        y = truth[s:s + chunk]
        rows = np.arange(y.shape[0])
        logit = X[s:s + chunk].astype(np.float64) @ means.T - half_sq + log_prior
        logit -= logit.max(axis=1, keepdims=True)
        post = np.exp(logit)
        post /= post.sum(axis=1, keepdims=True)
        difficulty[s:s + chunk] = 1.0 - post[rows, y]
        post[rows, y] = 0.0
        empty = post.sum(axis=1) <= 1e-300
        if empty.any():  # the true class takes all the mass: any other class, uniformly
            post[empty] = 1.0
            post[empty, y[empty]] = 0.0
        distractor[s:s + chunk] = _categorical(rng, post)
    return difficulty, distractor


def _categorical(rng: np.random.Generator, P: np.ndarray) -> np.ndarray:
    """One draw per row of the row-stochastic matrix P (n x K), rows need not be normalised."""
    cum = np.cumsum(P, axis=1)
    total = cum[:, -1:].copy()
    u = rng.random((P.shape[0], 1)) * total
    k = (u >= cum).sum(axis=1)
    return np.minimum(k, P.shape[1] - 1)


def _sample_workers(rng: np.random.Generator, n_per_item: np.ndarray, weights: np.ndarray,
                    chunk_entries: int = 4_000_000) -> np.ndarray:
    """Distinct workers for every item, successive sampling proportional to ``weights``.

    Returns an int64 array of length ``n_per_item.sum()``: item 0's workers,
    then item 1's, ...  Each item's workers are the first ``n_i`` distinct
    values of an i.i.d. sequence drawn with probabilities ``weights`` (which is
    sampling without replacement, the same law as Gumbel-top-k).  The sequence
    is extended for items that have not yet seen ``n_i`` distinct workers;
    after four extensions the rare leftovers are drawn afresh by Gumbel-top-k
    (only happens when n_i is close to the number of workers with real weight).
    """
    R = weights.shape[0]
    cdf = np.cumsum(weights / weights.sum())
    cdf[-1] = 1.0
    N = n_per_item.shape[0]
    offsets = np.zeros(N + 1, dtype=np.int64)
    np.cumsum(n_per_item, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.int64)
    hi = int(n_per_item.max()) if N else 0
    step = 2 * hi + 4
    rows_per_chunk = max(1, chunk_entries // (4 * step))
    logw = np.log(np.maximum(weights, 1e-300))

    def _emit(items: np.ndarray, rows: np.ndarray, keep: np.ndarray) -> None:
        vals = rows[keep]  # row-major: each item's workers in draw order
        n = n_per_item[items]
        start = np.repeat(offsets[items] - np.cumsum(n) + n, n)
        out[start + np.arange(vals.shape[0])] = vals

    for s in range(0, N, rows_per_chunk):
        items = np.arange(s, min(N, s + rows_per_chunk))
        need = n_per_item[items][:, None]
        C = np.searchsorted(cdf, rng.random((items.shape[0], step)), side="right")
        for _ in range(4):
            np.minimum(C, R - 1, out=C)
            order = np.argsort(C, axis=1, kind="stable")
            Cs = np.take_along_axis(C, order, axis=1)
            new = np.ones_like(Cs, dtype=bool)
            new[:, 1:] = Cs[:, 1:] != Cs[:, :-1]
            first = np.empty_like(new)
            np.put_along_axis(first, order, new, axis=1)
            rank = np.cumsum(first, axis=1)
            ok = rank[:, -1] >= need[:, 0]
            if ok.any():
                _emit(items[ok], C[ok], (first & (rank <= need))[ok])
            if ok.all():
                items = items[:0]
                break
            items, C, need = items[~ok], C[~ok], need[~ok]
            extra = np.searchsorted(cdf, rng.random((items.shape[0], C.shape[1])), side="right")
            C = np.concatenate([C, extra], axis=1)
        if items.shape[0]:
            # Exact fallback for the few leftovers: Gumbel-top-k over all workers.
            rows = max(1, chunk_entries // max(R, 1))
            for t in range(0, items.shape[0], rows):
                it = items[t:t + rows]
                key = logw[None, :] + rng.gumbel(size=(it.shape[0], R))
                order = np.argsort(-key, axis=1, kind="stable")
                keep = np.arange(R)[None, :] < n_per_item[it][:, None]
                _emit(it, order, keep)
    return out


def _resolve_pairs(pairs, K: int, classes: pd.Index, rng: np.random.Generator) -> list[tuple[int, int]]:
    if pairs is None:
        perm = rng.permutation(K)
        n = max(1, K // 4)
        return [(int(perm[2 * p]), int(perm[2 * p + 1])) for p in range(n)]
    out = []
    for pair in pairs:
        if len(pair) != 2:
            raise CrowdDataError(f"confuser pair {pair!r} must hold exactly two classes.")
        codes = []
        for c in pair:
            if c in classes:
                codes.append(int(classes.get_loc(c)))
            elif isinstance(c, (int, np.integer)) and 0 <= int(c) < K:
                codes.append(int(c))
            else:
                raise CrowdDataError(f"confuser pair {pair!r}: {c!r} is not a class.",
                                     hint=f"use class names {list(classes)} or codes 0..{K - 1}.")
        if codes[0] == codes[1]:
            raise CrowdDataError(f"confuser pair {pair!r} names the same class twice.")
        out.append((codes[0], codes[1]))
    return out


# --------------------------------------------------------------------------- main
def simulate_crowd(
    n_items: int = 1000,
    n_classes: int = 5,
    n_features: int = 16,
    n_workers: int = 50,
    answers_per_item: int | tuple[int, int] = (2, 5),
    worker_activity: str = "zipf",
    archetypes: Mapping[str, float] | None = None,
    expert_accuracy: tuple[float, float] = (0.85, 0.98),
    novice_accuracy: tuple[float, float] = (0.5, 0.75),
    confuser_pairs: Sequence[tuple[Any, Any]] | None = None,
    overlap: float = 1.0,
    instance_noise: float = 0.0,
    gold_fraction: float = 0.0,
    n_test: int = 0,
    class_names: Sequence[Any] | None = None,
    worker_id_format: str | Callable[[int], Any] | None = None,
    item_id_format: str | Callable[[int], Any] | None = None,
    class_prior: Sequence[float] | None = None,
    seed: int = 0,
    zipf_exponent: float = 1.0,
) -> SimulatedCrowd:
    """Simulate a crowdsourcing job with known truth and known worker matrices.

    Parameters
    ----------
    n_items : int
        Number of answered (train) items N.
    n_classes : int
        Number of classes K (>= 2).
    n_features : int
        Feature dimension d; 0 gives ``data.features = None`` (a hidden
        K-dimensional latent still defines item difficulty).
    n_workers : int
        Number of simulated workers (workers that draw no answer are dropped).
    answers_per_item : int or (low, high)
        Answers per item, uniform on ``low..high`` inclusive (``high <= n_workers``).
    worker_activity : {"zipf", "uniform"}
        How workers are picked: ``"zipf"`` gives worker of (random) rank k a
        weight ``k ** -zipf_exponent`` (a few workers do most of the answers).
    archetypes : dict name -> fraction
        Mix of ``expert, novice, confuser, spammer, one_answer_spammer,
        adversary``; fractions are normalised and rounded by largest remainder.
        Default :data:`DEFAULT_ARCHETYPES`.
    expert_accuracy, novice_accuracy : (low, high)
        Range of the per-worker mean diagonal (per-class values jitter by N(0, 0.03)).
    confuser_pairs : list of (class, class) or None
        Class pairs (names or codes) every confuser swaps; default ``max(1, K // 4)``
        random disjoint pairs, shared by all confusers.
    overlap : float > 0
        Class overlap of the feature mixture: class means have norm ``3 / overlap``
        around unit-variance noise, so larger values mean harder items.
    instance_noise : float in [0, 1]
        Probability scale of instance-dependent noise: a worker perceives the
        item's distractor class with probability ``instance_noise * difficulty_i``
        (at 1, perception is a draw from the Bayes posterior ``P(class | x_i)``).
    gold_fraction : float in [0, 1]
        Fraction of items whose true label is given as gold (exact count, random items).
    n_test : int
        Number of held-out items (features + truth, no answers).
    class_names : sequence or None
        Class names (default ``class_0..``).
    worker_id_format, item_id_format : str, callable or None
        Format string (``"img_{:05d}"``) or callable ``int -> id``; ``"mturk"`` for
        workers gives MTurk-like ids (``"A"`` + 13 of [0-9A-Z]).  Test items are
        numbered after the train items.  Defaults ``w000``, ``i00000``.
    class_prior : sequence of K floats or None
        Class probabilities (normalised); default uniform.
    seed : int
        Seed of the one ``numpy.random.Generator`` behind every draw.
    zipf_exponent : float
        Exponent of the Zipf activity law.

    Returns
    -------
    SimulatedCrowd
    """
    params = dict(n_items=n_items, n_classes=n_classes, n_features=n_features, n_workers=n_workers,
                  answers_per_item=answers_per_item, worker_activity=worker_activity,
                  archetypes=None if archetypes is None else dict(archetypes),
                  expert_accuracy=expert_accuracy, novice_accuracy=novice_accuracy,
                  confuser_pairs=None if confuser_pairs is None else [list(p) for p in confuser_pairs],
                  overlap=overlap, instance_noise=instance_noise, gold_fraction=gold_fraction, n_test=n_test,
                  class_names=None if class_names is None else list(class_names),
                  worker_id_format=worker_id_format if (worker_id_format is None or isinstance(worker_id_format, str))
                  else getattr(worker_id_format, "__name__", "callable"),
                  item_id_format=item_id_format if (item_id_format is None or isinstance(item_id_format, str))
                  else getattr(item_id_format, "__name__", "callable"),
                  class_prior=None if class_prior is None else [float(p) for p in class_prior],
                  seed=seed, zipf_exponent=zipf_exponent)
    # ------------------------------------------------------------ validation
    N, K, d, R, n_test = int(n_items), int(n_classes), int(n_features), int(n_workers), int(n_test)
    if N < 1 or K < 2 or d < 0 or R < 1 or n_test < 0:
        raise CrowdDataError(f"need n_items >= 1, n_classes >= 2, n_features >= 0, n_workers >= 1, n_test >= 0; "
                             f"got {N}, {K}, {d}, {R}, {n_test}.")
    if np.isscalar(answers_per_item):
        lo = hi = int(answers_per_item)
    else:
        lo, hi = (int(v) for v in answers_per_item)
    if not (1 <= lo <= hi <= R):
        raise CrowdDataError(f"answers_per_item={answers_per_item!r} must be 1 <= low <= high <= n_workers={R}.")
    if worker_activity not in ("zipf", "uniform"):
        raise CrowdDataError(f"worker_activity must be 'zipf' or 'uniform', got {worker_activity!r}.")
    exp_acc = _as_range(expert_accuracy, "expert_accuracy")
    nov_acc = _as_range(novice_accuracy, "novice_accuracy")
    if not overlap > 0:
        raise CrowdDataError(f"overlap must be > 0, got {overlap!r}.")
    if not 0.0 <= float(instance_noise) <= 1.0:
        raise CrowdDataError(f"instance_noise must lie in [0, 1], got {instance_noise!r}.")
    if not 0.0 <= float(gold_fraction) <= 1.0:
        raise CrowdDataError(f"gold_fraction must lie in [0, 1], got {gold_fraction!r}.")
    if class_names is None:
        w = len(str(K - 1))
        classes = pd.Index([f"class_{k:0{w}d}" for k in range(K)])
    else:
        classes = pd.Index(list(class_names))
        if len(classes) != K or classes.has_duplicates:
            raise CrowdDataError(f"class_names must be {K} distinct names, got {list(class_names)!r}.")
    if class_prior is None:
        prior = np.full(K, 1.0 / K)
    else:
        prior = np.asarray(class_prior, dtype=np.float64)
        if prior.shape != (K,) or np.any(prior < 0) or prior.sum() <= 0:
            raise CrowdDataError(f"class_prior must be {K} non-negative numbers, got {class_prior!r}.")
        prior = prior / prior.sum()
    counts = _archetype_counts(DEFAULT_ARCHETYPES if archetypes is None else archetypes, R)

    rng = np.random.default_rng(seed)

    # ------------------------------------------------------------ items
    truth = rng.choice(K, size=N, p=prior).astype(np.int64)
    test_truth = rng.choice(K, size=n_test, p=prior).astype(np.int64)
    d_lat = d if d > 0 else K
    means = _class_means(rng, K, d_lat, MEAN_RADIUS / float(overlap))
    X = _mixture_features(rng, means, truth)
    X_test = _mixture_features(rng, means, test_truth)
    log_prior = np.log(np.maximum(prior, 1e-300))
    difficulty, distractor = _difficulty_and_distractor(rng, X, means, log_prior, truth)
    rho = float(instance_noise) * difficulty

    # ------------------------------------------------------------ workers
    arche = np.concatenate([np.full(counts[a], a, dtype=object) for a in ARCHETYPES])
    T = np.empty((R, K, K))
    pos = 0
    pairs = _resolve_pairs(confuser_pairs, K, classes, rng)
    for a in ARCHETYPES:
        n = counts[a]
        sl = slice(pos, pos + n)
        pos += n
        if n == 0:
            continue
        if a == "expert":
            T[sl] = _skilled_matrices(rng, n, K, exp_acc)
        elif a == "novice":
            T[sl] = _skilled_matrices(rng, n, K, nov_acc)
        elif a == "confuser":
            M = _skilled_matrices(rng, n, K, exp_acc)
            for (p, q) in pairs:
                for src, dst in ((p, q), (q, p)):
                    # swap mass s ~ U(0.6, 0.9) to the partner class; the rest of the
                    # row keeps its shape (diagonal and other errors) scaled to 1 - s.
                    s = rng.uniform(0.6, 0.9, size=n)
                    rest = M[:, src].copy()
                    rest[:, dst] = 0.0
                    rest /= np.maximum(rest.sum(axis=1, keepdims=True), 1e-12)
                    M[:, src] = rest * (1.0 - s)[:, None]
                    M[:, src, dst] = s
            T[sl] = M
        elif a == "spammer":
            T[sl] = 1.0 / K
        elif a == "one_answer_spammer":
            c = rng.integers(0, K, size=n)
            T[sl] = 0.0
            T[np.arange(sl.start, sl.stop), :, c] = 1.0
        elif a == "adversary":
            diag = rng.uniform(0.0, 0.5 / K, size=(n, K))
            M = np.repeat(((1.0 - diag) / (K - 1))[:, :, None], K, axis=2)
            M[:, np.arange(K), np.arange(K)] = diag
            T[sl] = M
    T /= T.sum(axis=2, keepdims=True)
    perm = rng.permutation(R)
    T, arche = T[perm], arche[perm]

    if worker_activity == "zipf":
        weights = 1.0 / rng.permutation(np.arange(1, R + 1)).astype(np.float64) ** float(zipf_exponent)
    else:
        weights = np.ones(R)

    # ------------------------------------------------------------ answers
    n_per_item = rng.integers(lo, hi + 1, size=N)
    worker = _sample_workers(rng, n_per_item, weights)
    item = np.repeat(np.arange(N, dtype=np.int64), n_per_item)
    label = _sample_answers(rng, T, item, worker, truth, distractor if instance_noise > 0 else None, rho)

    # average effective matrices A @ T_r
    A = (np.bincount(truth * K + truth, weights=1.0 - rho, minlength=K * K)
         + np.bincount(truth * K + distractor, weights=rho, minlength=K * K)).reshape(K, K)
    row = A.sum(axis=1, keepdims=True)
    A = np.where(row > 0, A / np.where(row > 0, row, 1.0), np.eye(K))
    true_T = np.einsum("jk,rkc->rjc", A, T)

    # ------------------------------------------------------------ packaging
    gold = np.full(N, NO_GOLD, dtype=np.int64)
    n_gold = int(round(float(gold_fraction) * N))
    if n_gold:
        g = rng.choice(N, size=n_gold, replace=False)
        gold[g] = truth[g]

    used = np.bincount(worker, minlength=R) > 0
    if not used.all():
        worker = (np.cumsum(used) - 1)[worker]
    if isinstance(worker_id_format, str) and worker_id_format.lower() == "mturk":
        all_wids = pd.Index(mturk_like_ids(R, rng))
    else:
        all_wids = _format_ids(worker_id_format, np.arange(R), "w", len(str(R - 1)))
    width = len(str(N + n_test - 1))
    all_iids = _format_ids(item_id_format, np.arange(N + n_test), "i", width)
    if all_iids.has_duplicates or all_wids.has_duplicates:
        raise CrowdDataError("the id formats give duplicate ids.", hint="make the format injective, e.g. 'img_{:06d}'.")
    feats = X if d > 0 else None
    data = CrowdData.from_arrays(
        item, worker, label, item_ids=all_iids[:N], worker_ids=all_wids[used], classes=classes,
        gold=gold, features=feats, feature_names=None if feats is None else [f"f{k}" for k in range(d)],
        validate=False,  # valid by construction; skip the O(n log n) checks on millions of answers
    )
    if np.count_nonzero(np.bincount(label, minlength=K)) < 2:
        raise CrowdDataError("every simulated answer has the same label.",
                             hint="use more workers or fewer one_answer_spammers.")
    return SimulatedCrowd(
        data=data, truth=truth, true_matrices=true_T[used], archetype=arche[used].astype(str),
        item_difficulty=difficulty, test_features=X_test if d > 0 else None, test_truth=test_truth,
        test_ids=all_iids[N:], base_matrices=T[used], params=params,
    )


def _sample_answers(rng: np.random.Generator, T: np.ndarray, item: np.ndarray, worker: np.ndarray,
                    truth: np.ndarray, distractor: np.ndarray | None, rho: np.ndarray,
                    chunk: int = 2_000_000) -> np.ndarray:
    """One label per answer ``(item[a], worker[a])``, in chunks of answers.

    The worker perceives ``distractor[i]`` with probability ``rho[i]`` (only when
    ``distractor`` is given), else ``truth[i]``, and answers with a draw from
    ``T[worker, perceived, :]``: inverse CDF on the flattened cumulative matrix,
    whose row ``q = worker*K + perceived`` holds ``q + cumsum(T[q])``, so one
    ``searchsorted`` serves every answer.
    """
    R, K, _ = T.shape
    cum = np.cumsum(T.reshape(R * K, K), axis=1)
    cum[:, -1] = 1.0
    flat = (cum + np.arange(R * K)[:, None]).ravel()
    out = np.empty(worker.shape[0], dtype=np.int64)
    for s in range(0, worker.shape[0], chunk):
        it = item[s:s + chunk]
        perceived = truth[it]
        if distractor is not None:
            flip = rng.random(it.shape[0]) < rho[it]
            perceived[flip] = distractor[it[flip]]
        q = worker[s:s + chunk] * K + perceived
        u = np.minimum(rng.random(q.shape[0]), 1.0 - 1e-9)  # keep q + u below q + 1 after rounding
        pos = np.searchsorted(flat, q + u, side="right")
        out[s:s + chunk] = np.minimum(pos - q * K, K - 1)
    return out
