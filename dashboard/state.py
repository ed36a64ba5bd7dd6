"""The dashboard's loaded data: reading uploads, the bundled sample, cached analyses.

The upload handling is plain functions of ``(bytes, file name)`` so it is
tested without a browser: :func:`apply_upload` returns a new :class:`Dataset`
or raises :class:`~kdcrowd_core.errors.CrowdDataError`, leaving the previous
one untouched.  :func:`ingest` does the same on a session-state mapping
(``st.session_state`` in the app, a dict in tests), so a bad file shows an error
and the last good data stays.

Parsed files are cached by content hash (``st.cache_resource``: the same bytes
are never parsed twice, whatever their name), analyses by dataset key.
"""
from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
import io as _io
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from collections.abc import MutableMapping

import numpy as np
import pandas as pd
import streamlit as st

from kdcrowd_core import io as kio
from kdcrowd_core.data import CrowdData, ReadReport
from kdcrowd_core.errors import CrowdDataError

from .analysis import Analysis, compute_analysis

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "sample_data"

#: Upload kinds, in the order the Data page shows them, with their labels.
KINDS: dict[str, str] = {
    "answers": "Annotations (who labelled what)",
    "features": "Item features (optional)",
    "gold": "Gold labels (optional)",
    "test_features": "Test split: features (optional)",
    "test_gold": "Test split: gold labels (optional)",
}
SAMPLE_FILES = {"answers": "answers.csv", "features": "features.csv", "gold": "gold.csv",
                "test_features": "test_features.csv", "test_gold": "test_gold.csv"}

# session-state keys
DATASET = "kdc_dataset"
UPLOAD_ERROR = "kdc_upload_error"
UPLOAD_NOTICE = "kdc_upload_notice"
PENDING = "kdc_pending_uploads"
SEEN_UPLOADS = "kdc_seen_uploads"


def digest(payload: bytes) -> str:
    """Content hash of a file (blake2b, 128 bits, hex)."""
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


@dataclass(frozen=True)
class SourceFile:
    """One file that went into the dataset."""

    kind: str
    name: str
    digest: str
    size: int


@dataclass
class Dataset:
    """Everything loaded: the answers plus the optional files, and the assembled :class:`CrowdData`.

    ``crowd`` is ``answers`` with gold and features attached (what every page
    uses); the test split is kept apart (``test_X``, ``test_ids``, ``test_y``).
    """

    name: str
    answers: CrowdData
    crowd: CrowdData
    sources: dict[str, SourceFile] = field(default_factory=dict)
    features: tuple[np.ndarray, pd.Index, list[str] | None] | None = None
    gold: pd.Series | None = None
    test_features: tuple[np.ndarray, pd.Index, list[str] | None] | None = None
    test_gold: pd.Series | None = None
    notes: list[str] = field(default_factory=list)
    is_sample: bool = False
    file_reports: dict[str, ReadReport] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Identity of the loaded content (hash of the files' hashes)."""
        parts = [f"{k}:{s.digest}" for k, s in sorted(self.sources.items())]
        return digest("|".join(parts).encode()) if parts else "empty"

    @property
    def reports(self) -> list[ReadReport]:
        """What each reader read and skipped: the answers' reports, then the optional files' ones."""
        out = list(self.crowd.report)
        seen = {id(r) for r in out}
        out += [r for k, r in self.file_reports.items() if k != "answers" and id(r) not in seen]
        return out

    @property
    def has_test(self) -> bool:
        return self.test_features is not None

    @property
    def test_ids(self) -> pd.Index | None:
        return None if self.test_features is None else self.test_features[1]

    def test_split(self) -> tuple[np.ndarray, np.ndarray | None, pd.Index] | None:
        """``(X_test float32, y_test codes or None (-1 = unknown), test_ids)`` for the trainer, or None."""
        if self.test_features is None:
            return None
        X, ids, _ = self.test_features
        y = None
        if self.test_gold is not None:
            y = test_codes(self.test_gold, ids, self.crowd.classes)
        return np.ascontiguousarray(X, dtype=np.float32), y, ids


# ------------------------------------------------------------------ parsing
def parse_file(kind: str, payload: bytes, name: str) -> Any:
    """Read one uploaded file with the core readers.  Raises CrowdDataError on bad input."""
    if kind not in KINDS:
        raise CrowdDataError(f"unknown upload kind {kind!r}.", hint=f"use one of {list(KINDS)}.")
    if not payload:
        raise CrowdDataError("the file is empty.", path=name, hint="upload a file with a header and rows.")
    src = _io.BytesIO(payload)
    if kind == "answers":
        return kio.read_answers(src, name=name)
    if kind in ("gold", "test_gold"):
        return kio.read_gold(src, name=name)
    return kio.read_features(src, name=name)   # (X float32, ids, names) with .report


@st.cache_resource(max_entries=24, show_spinner=False)
def _parse_cached(kind: str, content_digest: str, _payload: bytes, name: str) -> Any:
    # cached by (kind, digest, name): the name appears in messages and reports
    return parse_file(kind, _payload, name)


def test_codes(gold: pd.Series, ids: pd.Index, classes: pd.Index) -> np.ndarray:
    """Class codes of ``gold`` aligned with ``ids`` (-1 where unknown).  Unknown label names are an error."""
    g = gold.dropna()
    lab = pd.Index(g.astype(str).str.strip().to_numpy())
    cls = pd.Index([str(c) for c in classes])
    codes = cls.get_indexer(lab)
    if (codes < 0).any():
        bad = list(pd.unique(lab[codes < 0]))[:5]
        raise CrowdDataError(f"test gold labels {bad} are not among the classes {list(cls)}.",
                             hint="use the same label names as the annotations.")
    pos = pd.Index([str(i).strip() for i in ids]).get_indexer([str(i).strip() for i in g.index])
    out = np.full(len(ids), -1, dtype=np.int64)
    ok = pos >= 0
    out[pos[ok]] = codes[ok]
    return out


# ----------------------------------------------------------------- assembly
def assemble(ds: Dataset) -> Dataset:
    """(Re)build ``ds.crowd`` from the answers and the optional files; raises CrowdDataError.

    Gold labels for items without answers are dropped with a note (upload them
    as test gold when they belong to a test split).
    """
    notes: list[str] = []
    crowd = ds.answers
    if ds.gold is not None:
        src = ds.sources.get("gold")
        crowd = crowd.with_gold(ds.gold, source=src.name if src else None, allow_unknown_items=True)
        n_known = int(crowd.gold_mask.sum())
        extra = int(ds.gold.dropna().shape[0]) - n_known
        if n_known == 0:
            raise CrowdDataError("none of the gold labels is for an item that has answers.",
                                 path=src.name if src else None,
                                 hint="check that gold item ids match the annotations' item ids.")
        if extra > 0:
            notes.append(f"{extra} gold labels are for items with no answers and were ignored "
                         "(upload them as test gold if they are a test split).")
    if ds.features is not None:
        X, ids, names = ds.features
        src = ds.sources.get("features")
        crowd = crowd.with_features(X, ids, feature_names=names, source=src.name if src else None)
        extra = len(ids) - crowd.n_items
        if extra > 0:
            notes.append(f"{extra} feature rows are for items with no answers (not used for training).")
    if ds.test_features is not None:
        Xt = ds.test_features[0]
        src = ds.sources.get("test_features")
        if crowd.features is None:
            notes.append("test features are loaded but the items have no features yet: upload item features.")
        elif Xt.shape[1] != crowd.features.shape[1]:
            raise CrowdDataError(f"test features have {Xt.shape[1]} columns but item features have "
                                 f"{crowd.features.shape[1]}.", path=src.name if src else None,
                                 hint="use the same feature columns for both files.")
    if ds.test_gold is not None:
        if ds.test_features is None:
            notes.append("test gold is loaded; upload the test features to evaluate on it.")
        else:
            codes = test_codes(ds.test_gold, ds.test_features[1], crowd.classes)
            if not (codes >= 0).any():
                src = ds.sources.get("test_gold")
                raise CrowdDataError("none of the test gold labels matches a test feature row.",
                                     path=src.name if src else None,
                                     hint="check that test gold item ids match the test features' ids.")
    return replace(ds, crowd=crowd, notes=notes)


def apply_upload(ds: Dataset | None, kind: str, payload: bytes, name: str, *,
                 cached: bool = True) -> Dataset:
    """The dataset after adding one uploaded file; ``ds`` itself is never modified.

    Raises CrowdDataError (with a message naming the file) when the file is
    unreadable or does not fit the data already loaded.
    """
    name = Path(name).name or "upload"
    h = digest(payload) if payload else "empty"
    parsed = _parse_cached(kind, h, payload, name) if cached else parse_file(kind, payload, name)
    src = SourceFile(kind=kind, name=name, digest=h, size=len(payload))
    rep = _report_of(parsed)
    if kind == "answers":
        keep = {} if ds is None or ds.is_sample else {k: v for k, v in ds.sources.items() if k != "answers"}
        new = Dataset(name=name, answers=parsed, crowd=parsed, sources={"answers": src, **keep},
                      file_reports={k: v for k, v in (ds.file_reports.items() if keep else ()) if k in keep},
                      features=ds.features if keep.get("features") else None,
                      gold=ds.gold if keep.get("gold") else None,
                      test_features=ds.test_features if keep.get("test_features") else None,
                      test_gold=ds.test_gold if keep.get("test_gold") else None)
        try:
            return assemble(new)
        except CrowdDataError as exc:
            # the new answers are fine; the old optional files don't fit them: drop those
            bare = Dataset(name=name, answers=parsed, crowd=parsed, sources={"answers": src})
            out = assemble(bare)
            out.notes.append(f"the previously loaded optional files were dropped: {exc}")
            return out
    if ds is None:
        raise CrowdDataError("load the annotations first.", path=name,
                             hint="upload the answers file, then features and gold.")
    field_name = {"features": "features", "gold": "gold", "test_features": "test_features",
                  "test_gold": "test_gold"}[kind]
    reports = {**ds.file_reports, **({kind: rep} if rep is not None else {})}
    new = replace(ds, sources={**ds.sources, kind: src}, is_sample=False, file_reports=reports,
                  **{field_name: parsed})
    if ds.is_sample:
        new = replace(new, name=f"{ds.name} + {name}")
    return assemble(new)


def _report_of(parsed: Any) -> ReadReport | None:
    if isinstance(parsed, CrowdData):
        return parsed.report[0] if parsed.report else None
    if isinstance(parsed, pd.Series):
        return parsed.attrs.get("report")
    return getattr(parsed, "report", None)


def ingest(state: MutableMapping, kind: str, payload: bytes, name: str) -> bool:
    """Apply an upload to ``state[DATASET]``; on bad input store the message in ``state[UPLOAD_ERROR]``.

    Returns True on success.  The previous dataset stays when the file is bad.
    """
    try:
        state[DATASET] = apply_upload(state.get(DATASET), kind, payload, name)
    except CrowdDataError as exc:
        state[UPLOAD_ERROR] = f"{name}: could not use this file. {exc}" if name not in str(exc) else str(exc)
        return False
    except Exception as exc:  # noqa: BLE001 - an unexpected reader bug must not blank the app
        state[UPLOAD_ERROR] = (f"{name}: could not read this file ({type(exc).__name__}: {exc}). "
                               "Check that it is a CSV/TSV/JSON/Parquet export with a header row.")
        return False
    state.pop(UPLOAD_ERROR, None)
    try:
        prefetch(state[DATASET])
    except Exception:  # noqa: BLE001 - prefetch is an optimisation only
        pass
    state[UPLOAD_NOTICE] = f"Loaded {KINDS[kind].split(' (')[0].lower()} from {name}."
    return True


def process_pending(state: MutableMapping) -> None:
    """Apply uploads queued in ``state[PENDING]`` as ``(kind, bytes, name)`` (used by tests and the page)."""
    pending = state.pop(PENDING, None) or []
    for kind, payload, name in pending:
        ingest(state, kind, payload, name)


# ------------------------------------------------------------------ sample
def _sample_from_files() -> Dataset | None:
    files = {k: SAMPLE_DIR / f for k, f in SAMPLE_FILES.items()}
    if not files["answers"].is_file():
        return None
    ds = None
    for kind, p in files.items():
        if p.is_file():
            ds = apply_upload(ds, kind, p.read_bytes(), p.name)
    return replace(ds, name="sample data (sample_data/)", is_sample=True)


def _sample_simulated() -> Dataset:
    from kdcrowd_core.simulate import simulate_crowd
    sim = simulate_crowd(n_items=3000, n_classes=8, n_features=64, n_workers=60, answers_per_item=(2, 6),
                         gold_fraction=0.2, n_test=1000, instance_noise=0.3, seed=0)
    d = sim.data
    gold = d.gold_series()
    answers = CrowdData.from_frame(sim.answers_frame(), item="item",
                                   report=ReadReport(source="<simulated sample>", format="simulated"))
    X, ids = d.features, d.item_ids
    test_gold = pd.Series(d.classes.take(sim.test_truth), index=sim.test_ids)
    fake = {k: SourceFile(kind=k, name=f"simulated {k}", digest=digest(f"sim-{k}-0".encode()), size=0)
            for k in SAMPLE_FILES}
    ds = Dataset(name="sample data (simulated)", answers=answers, crowd=answers, sources=fake,
                 features=(X, ids, d.feature_names), gold=gold,
                 test_features=(sim.test_features, sim.test_ids, d.feature_names), test_gold=test_gold,
                 is_sample=True)
    return assemble(ds)


@st.cache_resource(show_spinner="Loading the sample data…")
def load_sample() -> Dataset:
    """The bundled sample (``sample_data/``), or a simulated stand-in when the folder is empty."""
    return _sample_from_files() or _sample_simulated()


def current(state: MutableMapping | None = None) -> Dataset:
    """The loaded dataset; the sample on first visit."""
    state = st.session_state if state is None else state
    if state.get(DATASET) is None:
        state[DATASET] = load_sample()
    return state[DATASET]


# ---------------------------------------------------------------- analyses
@st.cache_resource(show_spinner=False)
def _executor() -> ThreadPoolExecutor:
    # one background worker: analyses start as soon as data is loaded, while the Data page renders
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="kdcrowd-analysis")


@st.cache_resource(max_entries=4, show_spinner=False)
def _analysis_future(key: str, _crowd: CrowdData) -> Future:
    return _executor().submit(compute_analysis, _crowd)


def prefetch(ds: Dataset) -> None:
    """Start computing the dataset's analysis in the background (no-op when cached or running)."""
    _analysis_future(ds.key, ds.crowd)


def analysis(ds: Dataset) -> Analysis:
    """Majority vote, Dawid-Skene and per-worker / per-item statistics, computed once per dataset."""
    fut = _analysis_future(ds.key, ds.crowd)
    if not fut.done():
        with st.spinner("Estimating worker confusion matrices…"):
            fut.result()
    if fut.exception() is not None:
        _analysis_future.clear()   # don't keep a failure cached; the next visit retries
    return fut.result()


@st.cache_resource(max_entries=4, show_spinner="Computing agreement statistics…")
def _agreement_cached(key: str, _crowd: CrowdData, top: int) -> dict:
    from kdcrowd_core import metrics
    return {
        "alpha": float(metrics.krippendorff_alpha(_crowd)),
        "fleiss": float(metrics.fleiss_kappa(_crowd)),
        "pairwise": metrics.pairwise_cohen_kappa(_crowd, top=top),
        "cooccurrence": np.asarray(metrics.pair_cooccurrence(_crowd)),
    }


def agreement(ds: Dataset, top: int = 20) -> dict:
    """Krippendorff's alpha, Fleiss' kappa, pairwise Cohen's kappa (top workers), pair co-occurrence."""
    return _agreement_cached(ds.key, ds.crowd, top)
