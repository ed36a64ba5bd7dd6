"""The dashboard's loaded data: reading uploads, the bundled sample, cached analyses.

The upload handling is plain functions of ``(bytes, file name)`` so it is
tested without a browser: :func:`apply_upload` returns a new :class:`Dataset`
or raises :class:`~kdcrowd_core.errors.CrowdDataError`, leaving the previous
one untouched.  :func:`ingest` does the same on a session-state mapping
(``st.session_state`` in the app, a dict in tests), so a bad file shows an error
and the last good data stays.

Parsed files are cached by content hash in a cache bounded in bytes
(:data:`PARSE_CACHE`, ``KDCROWD_PARSE_CACHE_MB``, default 512: the same bytes
are never parsed twice while they fit, whatever their name), analyses by dataset key.
"""
from __future__ import annotations

import hashlib
import os
import threading
import json
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
from kdcrowd_core.io.options import ReadOptions

from .bytecache import ByteLRU
from .analysis import Analysis, compute_analysis
from .datasets_db import DatasetRecord, DatasetStore, check_dataset_id, new_dataset_id
from .runs_db import data_home

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "sample_data"

#: Upload kinds, in the order the Data page shows them, with their labels.
KINDS: dict[str, str] = {
    "answers": "Annotations (who labelled what)",
    "features": "Item features (optional)",
    "gold": "Gold labels (optional)",
    "valid_features": "Validation split: features (optional)",
    "valid_gold": "Validation split: gold labels (optional)",
    "test_features": "Test split: features (optional)",
    "test_gold": "Test split: gold labels (optional)",
    "content": "Item content (optional)",
}
SAMPLE_FILES = {"answers": "answers.csv", "features": "features.csv", "gold": "gold.csv",
                "test_features": "test_features.csv", "test_gold": "test_gold.csv"}

#: The order files are applied in when a stored dataset is reopened.
APPLY_ORDER = ("answers", "features", "gold", "valid_features", "valid_gold", "test_features", "test_gold",
               "content")
#: Split-part kinds and the Dataset field each fills.
OPTIONAL_FIELDS = {"features": "features", "gold": "gold", "valid_features": "valid_features",
                   "valid_gold": "valid_gold", "test_features": "test_features", "test_gold": "test_gold",
                   "content": "content"}

# session-state keys
DATASET = "kdc_dataset"
URL_SYNCED = "kdc_url_dataset"      # the dataset id this session last wrote into the page address
URL_ERROR = "kdc_url_error"
ID_PENDING = "kdc_id_pending"   # {"kind", "payload", "name", "diagnosis"} of a file whose ids did not line up
FAILED_ANSWERS = "kdc_failed_answers"   # {"payload", "name", "options"} of an annotations file that did not read
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
    valid_features: tuple[np.ndarray, pd.Index, list[str] | None] | None = None
    valid_gold: pd.Series | None = None
    #: the items' texts or pictures (kdcrowd_core.featurize.ItemContent), shown next to item ids
    content: Any = None
    #: the dataset's id in the store (``""`` until stored); the page URL carries it
    id: str = ""
    #: how every file of the dataset is read: a ReadOptions as a dict (only non-default fields), stored with it
    options: dict[str, Any] = field(default_factory=dict)

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

    @property
    def has_valid(self) -> bool:
        return self.valid_features is not None and self.valid_gold is not None

    def valid_split(self) -> tuple[np.ndarray, np.ndarray, pd.Index] | None:
        """``(X_valid float32, y_valid codes, ids)`` of the validation items with a label, or None."""
        if not self.has_valid:
            return None
        X, ids, _ = self.valid_features
        y = test_codes(self.valid_gold, ids, self.crowd.classes)
        keep = y >= 0
        return np.ascontiguousarray(X[keep], dtype=np.float32), y[keep], ids[keep]

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
def parse_file(kind: str, payload: bytes, name: str, options: dict | None = None) -> Any:
    """Read one uploaded file with the core readers and the dataset's reading ``options``
    (a :class:`~kdcrowd_core.io.options.ReadOptions` as a dict).  Raises CrowdDataError on bad input."""
    if kind not in KINDS:
        raise CrowdDataError(f"unknown upload kind {kind!r}.", hint=f"use one of {list(KINDS)}.")
    if not payload:
        raise CrowdDataError("the file is empty.", path=name, hint="upload a file with a header and rows.")
    src = _io.BytesIO(payload)
    opts = ReadOptions.from_dict(options or {})
    if kind == "answers":
        return kio.read_answers(src, name=name, options=opts)
    if kind in ("gold", "valid_gold", "test_gold"):
        return kio.read_gold(src, name=name, options=opts)
    if kind == "content":
        from kdcrowd_core.featurize import ItemContent
        if name.lower().endswith(".zip"):
            return ItemContent.from_images(payload, name=name)
        return ItemContent.from_texts(payload, name=name)
    return kio.read_features(src, name=name, options=opts)   # (X float32, ids, names) with .report


def message(exc: CrowdDataError) -> str:
    """The error as the dashboard words it: options named by their controls, never library calls."""
    render = getattr(exc, "render", None)
    return render("dashboard") if callable(render) else str(exc)


#: Budget of the parse cache in MB (env KDCROWD_PARSE_CACHE_MB): parsed uploads kept in memory by content hash.
PARSE_CACHE_MB = int(os.environ.get("KDCROWD_PARSE_CACHE_MB") or 512)
#: Parsed files by (kind, digest, name, options), bounded in bytes (one process-wide cache; see bytecache.py).
PARSE_CACHE = ByteLRU(PARSE_CACHE_MB * 1024 * 1024)


def _parse_cached(kind: str, content_digest: str, _payload: bytes, name: str, options_json: str) -> Any:
    # cached by (kind, digest, name, options): the name appears in messages and reports
    key = (kind, content_digest, name, options_json)
    hit = PARSE_CACHE.get(key)
    if hit is None:
        hit = parse_file(kind, _payload, name, json.loads(options_json))
        PARSE_CACHE.put(key, hit)
    return hit


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
    if ds.valid_features is not None and crowd.features is not None \
            and ds.valid_features[0].shape[1] != crowd.features.shape[1]:
        src = ds.sources.get("valid_features")
        raise CrowdDataError(f"validation features have {ds.valid_features[0].shape[1]} columns but item features "
                             f"have {crowd.features.shape[1]}.", path=src.name if src else None,
                             hint="use the same feature columns for both files.")
    if ds.valid_gold is not None:
        if ds.valid_features is None:
            notes.append("validation gold is loaded; upload the validation features to use it for model selection.")
        else:
            codes = test_codes(ds.valid_gold, ds.valid_features[1], crowd.classes)
            if not (codes >= 0).any():
                src = ds.sources.get("valid_gold")
                raise CrowdDataError("none of the validation gold labels matches a validation feature row.",
                                     path=src.name if src else None,
                                     hint="check that the item ids of both validation files are the same.")
    elif ds.valid_features is not None:
        notes.append("validation features are loaded; upload the validation gold labels to use them.")
    if ds.content is not None:
        src = ds.sources.get("content")
        have = set(content_for(ds))
        n_with = int(sum(str(i) in have for i in crowd.item_ids))
        if n_with == 0:
            raise CrowdDataError(f"none of the {len(have)} items in the item content is an annotated item.",
                                 path=src.name if src else None,
                                 hint="check that the item content uses the annotations' item ids (see the id "
                                      "check below), or pick another 'Item id transform'.")
        if n_with < crowd.n_items:
            notes.append(f"item content covers {n_with:,} of the {crowd.n_items:,} annotated items.")
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
                 cached: bool = True, options: dict | None = None) -> Dataset:
    """The dataset after adding one uploaded file read with ``options``; ``ds`` itself is never modified.

    Raises CrowdDataError (with a message naming the file) when the file is
    unreadable or does not fit the data already loaded.  New annotations keep
    the optional files that still fit them (a sample's are dropped).
    """
    name = Path(name).name or "upload"
    h = digest(payload) if payload else "empty"
    if options is None:   # the dataset's own reading options (new annotations start from the defaults)
        options = ds.options if ds is not None and kind != "answers" and not ds.is_sample else {}
    opts = ReadOptions.from_dict(options).to_dict()
    parsed = (_parse_cached(kind, h, payload, name, json.dumps(opts, sort_keys=True, default=str)) if cached
              else parse_file(kind, payload, name, opts))
    src = SourceFile(kind=kind, name=name, digest=h, size=len(payload))
    rep = _report_of(parsed)
    if kind == "answers":
        keep = {} if ds is None or ds.is_sample else {k: v for k, v in ds.sources.items() if k != "answers"}
        carried = {f: getattr(ds, f) for k, f in OPTIONAL_FIELDS.items() if k in keep}
        new = Dataset(name=name, answers=parsed, crowd=parsed, sources={"answers": src, **keep},
                      file_reports={k: v for k, v in (ds.file_reports.items() if keep else ()) if k in keep},
                      options=opts, **carried)
        try:
            return assemble(new)
        except CrowdDataError as exc:
            # the new answers are fine; the old optional files don't fit them: drop those
            bare = Dataset(name=name, answers=parsed, crowd=parsed, sources={"answers": src}, options=opts)
            out = assemble(bare)
            out.notes.append(f"the previously loaded optional files were dropped: {message(exc)}")
            return out
    if ds is None:
        raise CrowdDataError("load the annotations first.", path=name,
                             hint="upload the answers file, then features and gold.")
    reports = {**ds.file_reports, **({kind: rep} if rep is not None else {})}
    new = replace(ds, sources={**ds.sources, kind: src}, is_sample=False, file_reports=reports,
                  options=opts, **{OPTIONAL_FIELDS[kind]: parsed})
    if ds.is_sample:
        new = replace(new, name=f"{ds.name} + {name}")
    return assemble(new)


def _report_of(parsed: Any) -> ReadReport | None:
    if isinstance(parsed, CrowdData):
        return parsed.report[0] if parsed.report else None
    if isinstance(parsed, pd.Series):
        return parsed.attrs.get("report")
    return getattr(parsed, "report", None)


def ingest(state: MutableMapping, kind: str, payload: bytes, name: str, options: dict | None = None) -> bool:
    """Apply an upload to ``state[DATASET]`` and store the result; on bad input put the message in ``state[UPLOAD_ERROR]``.

    Returns True on success.  The previous dataset stays when the file is bad.
    New annotations make a new dataset (a new id); an optional file is added to
    the current dataset (a copy, with a new id, when that is the sample).  An
    annotations file that can't be read is kept in ``state[FAILED_ANSWERS]`` so
    the page can offer its columns to pick ("Adjust how this file is read").
    """
    old = state.get(DATASET)
    name = Path(name).name or "upload"
    try:
        new = apply_upload(old, kind, payload, name, options=options)
        new = persist(old, new, {kind: (payload, name)}, new_id=kind == "answers")
    except CrowdDataError as exc:
        text_ = message(exc)
        state[UPLOAD_ERROR] = text_ if name in text_ else f"{name}: could not use this file. {text_}"
        if kind == "answers" and payload:
            state[FAILED_ANSWERS] = {"payload": payload, "name": name, "options": dict(options or {})}
        _diagnose_failed(state, old, kind, payload, name, options)
        return False
    except Exception as exc:  # noqa: BLE001 - an unexpected reader bug must not blank the app
        state[UPLOAD_ERROR] = (f"{name}: could not read this file ({type(exc).__name__}: {exc}). "
                               "Check that it is a CSV/TSV/JSON/Parquet export with a header row.")
        return False
    state[DATASET] = new
    state.pop(UPLOAD_ERROR, None)
    if kind == "answers":
        state.pop(FAILED_ANSWERS, None)
    if kind == "answers" or (state.get(ID_PENDING) or {}).get("kind") == kind:
        state.pop(ID_PENDING, None)
    try:
        prefetch(new)
    except Exception:  # noqa: BLE001 - prefetch is an optimisation only
        pass
    state[UPLOAD_NOTICE] = f"Loaded {KINDS[kind].split(' (')[0].lower()} from {name}."
    return True


def build_from_store(rec: DatasetRecord, options: dict | None) -> Dataset:
    """A stored dataset's files read again (answers first) with reading ``options``; raises CrowdDataError."""
    store = dataset_store()
    ds = None
    for kind in APPLY_ORDER:
        meta = rec.files.get(kind)
        if meta is not None:
            ds = apply_upload(ds, kind, store.read_file(rec.id, kind), meta["name"], options=options or {})
    if ds is None:
        raise CrowdDataError("this dataset has no annotations file.", hint="upload it again on the Data page.")
    return ds


def reread(state: MutableMapping, options: dict | None,
           upload: tuple[str, bytes, str] | None = None) -> bool:
    """Read every file of the current dataset again with other reading ``options`` (same dataset id;
    a copy for the sample), plus ``upload = (kind, bytes, name)`` when given.  On bad input the message
    goes to ``state[UPLOAD_ERROR]`` and nothing changes."""
    ds = state.get(DATASET)
    rec = dataset_store().get(ds.id) if ds is not None and ds.id else None
    if rec is None or "answers" not in rec.files:
        state[UPLOAD_ERROR] = "This dataset's files are not stored: upload the annotations again."
        return False
    name = upload[2] if upload is not None else rec.files["answers"]["name"]
    try:
        new = build_from_store(rec, options)
        uploads = {}
        if upload is not None:
            kind, payload, fname = upload
            new = apply_upload(new, kind, payload, fname, options=options or {})
            uploads = {kind: (payload, fname)}
        if ds.is_sample:
            new = replace(new, name=f"{ds.name} (other reading settings)")
        new = persist(ds, new, uploads, new_id=False)
    except CrowdDataError as exc:
        state[UPLOAD_ERROR] = f"{name}: could not read it with these settings. {message(exc)}"
        return False
    state[DATASET] = new
    state.pop(UPLOAD_ERROR, None)
    state.pop(ID_PENDING, None)
    state[UPLOAD_NOTICE] = (f"Loaded {name} with the new item id transform." if upload is not None
                            else f"Read {name} again with the chosen settings.")
    try:
        prefetch(new)
    except Exception:  # noqa: BLE001
        pass
    return True


# ------------------------------------------------------------ id diagnosis
#: kinds whose item ids must line up with the answers', and how messages name them
ID_KINDS = {"features": "features", "gold": "gold", "content": "item content"}


def _ids_of(kind: str, parsed: Any) -> pd.Index | None:
    if kind == "gold":
        return pd.Index(parsed.dropna().index) if isinstance(parsed, pd.Series) else None
    if kind == "features":
        return pd.Index(parsed[1])
    ids = getattr(parsed, "ids", None)
    return pd.Index(list(ids)) if ids is not None else None


def diagnose(ds: Dataset, kind: str, ids: Any, source: str | None = None):
    """io's id diagnosis of ``ids`` (of a ``kind`` file) against the dataset's answered items."""
    from kdcrowd_core.io.diagnose import diagnose_ids
    return diagnose_ids(ds.answers.item_ids, ids, what=ID_KINDS.get(kind, kind), source=source,
                        current=ReadOptions.from_dict(ds.options).id_transform)


def id_problems(ds: Dataset) -> list[tuple[str, Any]]:
    """``(kind, IdDiagnosis)`` for loaded features / gold whose ids match few answered items and that an
    id transform would fix (the Data page offers the fix)."""
    out = []
    parts = {"features": ds.features[1] if ds.features is not None else None,
             "gold": ds.gold.dropna().index if ds.gold is not None else None,
             "content": content_ids(ds) if ds.content is not None else None}
    for kind, ids in parts.items():
        if ids is None:
            continue
        src = ds.sources.get(kind)
        d = diagnose(ds, kind, ids, src.name if src else None)
        if not d.ok and d.proposed_transform is not None and d.n_matched_proposed > d.n_matched:
            out.append((kind, d))
    return out


def content_ids(ds: Dataset) -> list:
    """The item content's ids with the dataset's item id transform applied (as the answers' ids are)."""
    from kdcrowd_core.io.options import transform_id
    steps = ReadOptions.from_dict(ds.options).id_transform
    return [transform_id(str(i), steps) for i in ds.content.ids]


def content_for(ds: Dataset) -> dict[str, str]:
    """Answered item id (as text) -> the content's own id, for the items that have content."""
    if ds.content is None:
        return {}
    from kdcrowd_core.io.options import transform_id
    steps = ReadOptions.from_dict(ds.options).id_transform
    out = {}
    for raw in ds.content.ids:
        out.setdefault(str(transform_id(str(raw), steps)), raw)
    return out


def _diagnose_failed(state: MutableMapping, old: Dataset | None, kind: str, payload: bytes, name: str,
                     options: dict | None) -> None:
    """After a features / gold upload failed: when its ids don't line up, keep io's diagnosis for the page."""
    if old is None or kind not in ("features", "gold", "content") or not payload:
        return
    try:
        parsed = parse_file(kind, payload, name, options if options is not None else old.options)
        ids = _ids_of(kind, parsed)
        if ids is None:
            return
        if kind == "content":
            from kdcrowd_core.io.options import transform_id
            steps = ReadOptions.from_dict(options if options is not None else old.options).id_transform
            ids = [transform_id(str(i), steps) for i in ids]
        d = diagnose(old, kind, ids, name)
    except Exception:  # noqa: BLE001 - the diagnosis is a help; the upload's own error is already shown
        return
    if not d.ok:
        state[ID_PENDING] = {"kind": kind, "payload": payload, "name": name, "diagnosis": d}


def apply_id_transform(state: MutableMapping, steps: tuple[str, ...] | list[str]) -> bool:
    """Read the dataset again with item id transform ``steps`` (adding the file that was waiting for it)."""
    ds = state.get(DATASET)
    opts = ReadOptions.from_dict(ds.options).replace(id_transform=tuple(steps)).to_dict()
    pending = state.get(ID_PENDING)
    upload = (pending["kind"], pending["payload"], pending["name"]) if pending else None
    return reread(state, opts, upload)


def process_pending(state: MutableMapping) -> None:
    """Apply uploads queued in ``state[PENDING]`` as ``(kind, bytes, name)`` (used by tests and the page)."""
    pending = state.pop(PENDING, None) or []
    for kind, payload, name in pending:
        ingest(state, kind, payload, name)


# ------------------------------------------------------------ the store
@st.cache_resource(show_spinner=False)
def _dataset_store(home: str) -> DatasetStore:
    return DatasetStore(home)


def dataset_store() -> DatasetStore:
    """The datasets table and folders of the data directory (``$KDCROWD_HOME``, ./.kdcrowd or ~/.kdcrowd)."""
    return _dataset_store(str(data_home()))


_REGISTER_LOCK = threading.Lock()


def counts(ds: Dataset) -> dict[str, int]:
    c = ds.crowd
    return {"n_items": c.n_items, "n_workers": c.n_workers, "n_answers": c.n_answers, "n_classes": c.n_classes}


def persist(old: Dataset | None, new: Dataset, uploads: dict[str, tuple[bytes, str]], *, new_id: bool) -> Dataset:
    """Store ``new`` (made from ``old`` plus ``uploads``) and return it with its id.

    A new id when asked, or when ``old`` is the sample or not stored; otherwise
    ``old``'s id (and name, which the user may have changed) is kept.
    """
    store = dataset_store()
    same = not new_id and old is not None and bool(old.id) and not old.is_sample
    did = old.id if same else new_dataset_id()
    keep = {k: {"name": s.name, "digest": s.digest, "size": s.size} for k, s in new.sources.items()
            if k not in uploads}
    copy_from = None if same else (old.id if old is not None and old.id else None)
    if keep and not same and not copy_from:
        raise CrowdDataError("the dataset's other files are not stored.", hint="upload the annotations again.")
    name = old.name if same else new.name
    store.save(dataset_id=did, name=name, files=uploads, keep_files=keep, copy_from=copy_from,
               options=new.options, counts=counts(new))
    return replace(new, id=did, name=name, is_sample=False)


def read_source(ds: Dataset, kind: str) -> bytes:
    """The stored bytes of one of the dataset's files."""
    return dataset_store().read_file(ds.id, kind)


def sample_record() -> DatasetRecord:
    """The bundled sample's entry in the store (registered, with its files, on first use)."""
    store = dataset_store()
    with _REGISTER_LOCK:
        rec = store.sample()
        if rec is None:
            ds = load_sample()
            files = {k: ((SAMPLE_DIR / f).read_bytes(), f) for k, f in SAMPLE_FILES.items()
                     if (SAMPLE_DIR / f).is_file() and k in ds.sources}
            rec = store.save(dataset_id=new_dataset_id(), name=ds.name, files=files, counts=counts(ds),
                             is_sample=True)
    return rec


@st.cache_resource(max_entries=8, show_spinner="Opening the dataset…")
def _open_cached(version: str, _rec: DatasetRecord, home: str) -> Dataset:
    ds = load_sample() if _rec.is_sample else build_from_store(_rec, stored_options(_rec))
    return replace(ds, id=_rec.id, name=_rec.name, is_sample=_rec.is_sample)


def stored_options(rec: DatasetRecord) -> dict:
    """The record's reading options (records of the first store version kept them per file kind)."""
    o = dict(rec.options or {})
    if "answers" in o and isinstance(o["answers"], dict):
        o = dict(o["answers"])
    return ReadOptions.from_dict(o).to_dict()


def open_dataset(dataset_id: str) -> Dataset:
    """The stored dataset ``dataset_id`` (its files read again with their options; cached per version)."""
    rec = dataset_store().get(check_dataset_id(dataset_id))
    if rec is None:
        raise CrowdDataError(f"there is no dataset {dataset_id} in this data directory (it may have been deleted).",
                             hint="pick one from the list on the Data page.")
    return _open_cached(rec.version, rec, str(data_home()))


def rename_dataset(state: MutableMapping, name: str) -> None:
    ds = state[DATASET]
    dataset_store().rename(ds.id, name)
    state[DATASET] = replace(ds, name=dataset_store().get(ds.id).name)


def delete_dataset(state: MutableMapping, dataset_id: str) -> None:
    """Delete a stored dataset (never the sample); the current one falls back to the sample."""
    store = dataset_store()
    rec = store.get(check_dataset_id(dataset_id))
    if rec is None or rec.is_sample:
        return
    store.delete(dataset_id)
    ds = state.get(DATASET)
    if ds is not None and ds.id == dataset_id:
        state[DATASET] = open_dataset(sample_record().id)


def follow_url() -> None:
    """Keep the session's dataset and the page address (``?dataset=<id>``) in step.

    An id in the address that this session did not write there (a refresh, a second
    tab, a bookmark, an edited address) opens that dataset; otherwise the session's
    dataset wins and its id is written into the address.
    """
    s = st.session_state
    process_pending(s)
    want = st.query_params.get("dataset")
    ds = s.get(DATASET)
    if want and want != s.get(URL_SYNCED) and (ds is None or want != ds.id):
        try:
            s[DATASET] = open_dataset(want)
        except CrowdDataError as exc:
            s[URL_ERROR] = f"The dataset in the page address could not be opened: {message(exc)}"
    ds = current()
    if ds.id and st.query_params.get("dataset") != ds.id:
        st.query_params["dataset"] = ds.id
    s[URL_SYNCED] = ds.id


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
        state[DATASET] = open_dataset(sample_record().id)
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
    return analysis_of(ds.key, ds.crowd)


def analysis_of(key: str, crowd: CrowdData) -> Analysis:
    """:func:`analysis` by the dataset's key and answers (for code that has no Dataset at hand)."""
    fut = _analysis_future(key, crowd)
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


# ------------------------------------------------------------ item content -> features
@st.cache_resource(show_spinner=False)
def _featurize_registry() -> tuple[dict, threading.Lock]:
    return {}, threading.Lock()


def featurize_job(ds: Dataset):
    """The featurizing job of dataset ``ds`` in this server (running or finished), or None."""
    reg, lock = _featurize_registry()
    with lock:
        return reg.get(ds.id)


def start_featurizing(ds: Dataset):
    """Build features from the dataset's item content in a background thread (see dashboard/featurizing.py)."""
    from . import featurizing
    reg, lock = _featurize_registry()
    return featurizing.start(reg, lock, dataset_id=ds.id, payload=read_source(ds, "content"),
                             name=ds.sources["content"].name, data_dir=str(data_home()))


def add_built_features(state: MutableMapping, job) -> bool:
    """Add a finished job's features to the session's dataset (once), like an uploaded features file."""
    ds = state.get(DATASET)
    if job.applied or job.status != "done" or ds is None or ds.id != job.dataset_id:
        return False
    job.applied = True
    stem = Path(job.content_name).stem or "item content"
    ok = ingest(state, "features", job.features_csv(), f"features from {stem}.csv")
    if ok:
        model = "MiniLM" if job.content_kind == "texts" else "EfficientNet-Lite0"
        state[UPLOAD_NOTICE] = (f"Built {job.result.X.shape[1]} features ({model}) for {len(job.result.ids):,} "
                                f"items from {job.content_name}: Train can use them now.")
    return ok
