"""Training runs from the dashboard: settings, the job callable, the runs store, saved results.

The job callable (:func:`make_job`) runs the real KD-Crowd trainer
(``kdcrowd_core.kd``) in the :mod:`dashboard.jobs` worker thread: it saves the
answers it trains on and the trainer's result into the run's folder, so a
finished run can be reopened after a restart (:func:`load_run`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

import numpy as np
import pandas as pd
import streamlit as st

from kdcrowd_core.data import CrowdData
from kdcrowd_core.paths import UnsafePathError, confined

from .jobs import Job, JobContext, JobManager
from .runs_db import RunRecord, RunStore, data_home

RUN_KEY = "kdc_run"
SAMPLE_CHECKED_KEY = "kdc_sample_run_checked"

#: The pre-computed KD-Crowd run on the bundled sample (``python scripts/make_sample_run.py``).
BUNDLED_RUN_DIR = Path(__file__).resolve().parents[1] / "sample_data" / "run"
#: Id prefix of runs imported from the bundle (see :func:`is_bundled`).
BUNDLED_PREFIX = "sample-"
BUNDLED_LABEL = "sample run (pre-computed)"

_log = logging.getLogger(__name__)

#: Choices shown on the Train page (the trainer validates them; see kdcrowd_core/kd/config.py).
TEACHERS = ["aggnet", "prob-transition", "crowdlayer-mw", "crowdlayer-vw", "crowdlayer-vb", "crowdlayer-vw+b", "conal"]
DISTILL = ["mig-kl", "mig-pearson", "mig-hellinger", "kl", "ce"]
ROBUST = ["small-loss", "gce", "none"]
STAGES = ("mv", "ds", "teacher", "student", "stage2")


def kd_module():
    """The trainer module, or None when it cannot be imported (the page then says so)."""
    try:
        from kdcrowd_core import kd
    except Exception:  # noqa: BLE001
        return None
    return kd


def choices() -> dict[str, list[str]]:
    """Teacher / distillation / robust choices: the trainer's own lists when it publishes them."""
    kd = kd_module()
    out = {"teacher": TEACHERS, "distill": DISTILL, "robust": ROBUST}
    if kd is not None:
        for key, attr in (("teacher", "TEACHERS"), ("distill", "DISTILL_LOSSES"), ("robust", "ROBUST_METHODS")):
            v = getattr(kd, attr, None)
            if v:
                out[key] = list(v)
    return out


def default_config() -> dict[str, Any]:
    """The trainer's default settings as a dict (empty when the trainer is unavailable)."""
    kd = kd_module()
    if kd is None:
        return {}
    return kd.KDConfig().to_dict()


def gpu_name() -> str | None:
    """Name of the CUDA GPU when there is one."""
    try:
        import torch
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    return None


# ------------------------------------------------------------- runs & jobs
def home() -> Path:
    """The data directory: ``kdcrowd dashboard --data-dir`` / ``$KDCROWD_HOME`` (never set from a page)."""
    return data_home()


@st.cache_resource(show_spinner=False)
def _manager(home_dir: str) -> JobManager:
    return JobManager(RunStore(home_dir))


def manager() -> JobManager:
    """The process-wide job manager for the current data directory."""
    return _manager(str(home()))


def store() -> RunStore:
    return manager().store


def active_job() -> Job | None:
    act = manager().active()
    return act[0] if act else None


def last_job() -> Job | None:
    m = manager()
    jobs = list(m._jobs.values())
    return jobs[-1] if jobs else None


def save_crowd(run_dir: Path, data: CrowdData) -> None:
    """The answers a run trained on: codes in ``answers.npz``, ids and class names in ``answers_ids.json``."""
    np.savez(run_dir / "answers.npz", item=data.item, worker=data.worker, label=data.label,
             gold=data.gold if data.gold is not None else np.zeros(0, dtype=np.int64))
    ids = {"item_ids": _plain(data.item_ids), "worker_ids": _plain(data.worker_ids),
           "classes": _plain(data.classes), "has_gold": data.gold is not None}
    (run_dir / "answers_ids.json").write_text(json.dumps(ids))


def _plain(idx: pd.Index) -> list:
    return [v.item() if hasattr(v, "item") else v for v in idx.tolist()]


def load_crowd(run_dir: Path) -> CrowdData | None:
    p = Path(run_dir)
    if not (p / "answers.npz").is_file():
        return None
    z = np.load(p / "answers.npz")
    ids = json.loads((p / "answers_ids.json").read_text())
    return CrowdData.from_arrays(z["item"], z["worker"], z["label"], item_ids=ids["item_ids"],
                                 worker_ids=ids["worker_ids"], classes=ids["classes"],
                                 gold=z["gold"] if ids["has_gold"] else None, validate=False)


def make_job(crowd: CrowdData, config: dict[str, Any],
             test: tuple[np.ndarray, np.ndarray | None, pd.Index] | None = None,
             valid: tuple[np.ndarray, np.ndarray] | None = None) -> Callable[[JobContext], Any]:
    """The callable a run executes: train KD-Crowd on ``crowd`` and save everything to the run folder.

    ``valid = (features, class codes)``: model selection data (kept out of ``crowd`` by the caller)."""

    def run(ctx: JobContext):
        from kdcrowd_core.kd import KDConfig, KDCrowd, TrainingCancelled
        from kdcrowd_core.kd.pipeline import train_kd   # the same pipeline as `kdcrowd train` and the benchmark
        cfg = KDConfig.from_dict(config)
        ctx.log(f"training on {crowd.n_items} items, {crowd.n_answers} answers, device={cfg.device}")
        if valid is not None:
            ctx.log(f"model selection on {len(valid[1])} gold items held out of training")
        save_crowd(ctx.run_dir, crowd)
        trainer = KDCrowd(cfg)
        try:
            result = train_kd(crowd, cfg, valid=valid, test=test, callback=ctx.report, cancel=ctx.cancel,
                              trainer=trainer).result_
        except TrainingCancelled:
            raise TrainingCancelled(save_partial(trainer, ctx.run_dir)) from None
        result.save(ctx.run_dir / "result")
        ctx.log(f"trained on {result.device}; result saved")
        return result

    return run


def save_partial(trainer, run_dir: Path) -> str:
    """Keep what a cancelled fit finished in ``<run_dir>/partial`` (see kdcrowd_core.kd.partial); returns the
    sentence the Train page shows."""
    from kdcrowd_core.kd.partial import partial_result
    try:
        part = partial_result(trainer)
        if part is None or not part.finished:
            return "Cancelled before any stage finished: nothing was kept."
        part.save(Path(run_dir) / "partial")
    except Exception as exc:  # noqa: BLE001 - saving the partial result must not hide the cancel
        _log.warning("could not save the finished stages: %s", exc)
        return f"Cancelled; the finished stages could not be saved ({type(exc).__name__}: {exc})."
    return f"Cancelled: {part.describe()} Saved in {Path(run_dir) / 'partial'}."


#: The most of the gold items the Train page may hold out for model selection (the rest scores the run).
MAX_VALID_SHARE = 0.9


def split_gold_for_validation(crowd: CrowdData, share: float, seed: int = 0):
    """Hold ``share`` of the gold items (features needed) out of training for model selection.

    Returns ``(training crowd, (features, gold codes))``; the training crowd keeps every worker (so the
    worker order matches ``crowd``'s) and the rest of the gold to score the run.  ``share <= 0``, no gold
    or no features: ``(crowd, None)``."""
    from kdcrowd_core.kd.pipeline import hold_out_gold   # the same split as ``kdcrowd train --valid-from-gold``
    if share <= 0:
        return crowd, None
    train, valid, _ = hold_out_gold(crowd, min(share, MAX_VALID_SHARE), seed)
    return train, valid


def start(ds, config: dict[str, Any], valid_share: float = 0.0) -> Job:
    """Start a training run on the loaded dataset (raises RuntimeError when one is already going).

    With an uploaded validation split, its labelled items select the models (and items of it that
    also have answers leave training, as in ``kdcrowd train --valid-features``).  Otherwise
    ``valid_share > 0``: that share of the gold items leaves training and selects the models
    (every stage keeps its best epoch on them; ``robust="auto"`` chooses between students)."""
    vs = ds.valid_split() if hasattr(ds, "valid_split") else None
    shown = dict(config)
    if vs is not None:
        Xv, yv, vid = vs
        crowd = ds.crowd
        wanted = {str(i).strip() for i in vid}
        shared = crowd.item_ids[[str(i).strip() in wanted for i in crowd.item_ids]]
        if len(shared):
            crowd = crowd.without_items(shared, drop_empty_workers=False)
            shown["validation_items_left_out_of_training"] = int(len(shared))
        valid = (Xv, yv)
        shown["validation_split_items"] = int(len(yv))
    else:
        crowd, valid = split_gold_for_validation(ds.crowd, valid_share, int(config.get("seed") or 0))
        if valid is not None:
            shown["validation_gold_items"] = int(len(valid[1]))
    job = manager().start(make_job(crowd, config, ds.test_split(), valid), config=shown,
                          dataset=ds.name, dataset_key=ds.key, dataset_id=getattr(ds, "id", "") or "")
    st.session_state[RUN_KEY] = job.run_id
    return job


def belongs(rec: RunRecord, ds) -> bool:
    """True when run ``rec`` was trained on dataset ``ds`` (by stored id; by content for older runs)."""
    if rec.dataset_id:
        return rec.dataset_id == getattr(ds, "id", "")
    return rec.dataset_key == ds.key


def runs_of(ds, *, done_only: bool = False, limit: int = 200) -> list[RunRecord]:
    """The runs trained on ``ds``, newest first."""
    return [r for r in store().list(limit=limit) if belongs(r, ds) and (not done_only or r.status == "done")]


@st.cache_resource(max_entries=6, show_spinner="Loading the run's results…")
def _load_result(result_dir: str, finished: float | None):
    from kdcrowd_core.kd import KDResult
    return KDResult.load(result_dir)


@dataclass
class LoadedRun:
    record: RunRecord
    result: Any             # KDResult
    crowd: CrowdData        # the answers it trained on


def load_run(run_id: str, current_crowd: CrowdData | None = None, current_key: str | None = None) -> LoadedRun | None:
    """A finished run's result and answers (from memory when this process ran it, else from its folder)."""
    rec = store().get(run_id)
    if rec is None or rec.status != "done":
        return None
    try:
        run_dir = store().run_dir(rec.id)   # derived from the id and confined; the stored result_dir is not trusted
    except UnsafePathError:
        return None
    job = manager().get(run_id)
    result = job.result if job is not None and job.result is not None else None
    if result is None:
        rdir = run_dir / "result"
        if not rdir.exists():
            return None
        result = _load_result(str(rdir), rec.finished)
    if (current_crowd is not None and rec.dataset_key == current_key
            and current_crowd.n_items == len(result.item_ids)):   # fewer items: gold was held out for selection
        crowd = current_crowd
    else:
        crowd = _load_crowd_cached(str(run_dir), rec.id)
        if crowd is None:
            return None
    return LoadedRun(record=rec, result=result, crowd=crowd)


@st.cache_resource(max_entries=4, show_spinner=False)
def _load_crowd_cached(run_dir: str, run_id: str) -> CrowdData | None:
    return load_crowd(Path(run_dir))


def latest_done(ds=None) -> RunRecord | None:
    """Most recent finished run (of dataset ``ds`` when given; a content key is accepted too)."""
    for r in store().list(limit=200):
        if r.status != "done":
            continue
        if ds is None or (r.dataset_key == ds if isinstance(ds, str) else belongs(r, ds)):
            return r
    return None


def selected_run_id(ds) -> str | None:
    """The run the Results/Workers pages show: the one picked by the user when it belongs to ``ds``,
    else the latest finished one of ``ds`` (``ds`` may also be a content key, as before datasets were stored)."""
    rid = st.session_state.get(RUN_KEY)
    if rid:
        rec = store().get(rid)
        if rec is not None and rec.status == "done" and (
                rec.dataset_key == ds if isinstance(ds, str) else belongs(rec, ds)):
            return rid
    r = latest_done(ds)
    return r.id if r else None


# ------------------------------------------------------ bundled sample run
def is_bundled(run: RunRecord | str) -> bool:
    """True for the pre-computed sample run imported from ``sample_data/run``."""
    rid = run if isinstance(run, str) else run.id
    return rid.startswith(BUNDLED_PREFIX)


def run_label(r: RunRecord) -> str:
    """How a run is named in the run pickers."""
    settings = f"{r.config.get('teacher', '')}/{r.config.get('distill', '')}"
    if is_bundled(r):
        return f"{BUNDLED_LABEL} — {r.dataset} — {settings}"
    return f"{r.id} — {r.dataset} — {settings}"


def bundled_meta(bundle: Path = BUNDLED_RUN_DIR) -> dict[str, Any] | None:
    """``run.json`` of the bundled run, or None when there is no (usable) bundle."""
    try:
        meta = json.loads((Path(bundle) / "run.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not (Path(bundle) / "result" / "result.json").is_file():
        return None
    return meta


def import_bundled_run(st_store: RunStore, crowd: CrowdData, dataset_key: str,
                       bundle: Path = BUNDLED_RUN_DIR, dataset_id: str = "") -> str | None:
    """Register the bundled sample run in ``st_store`` as a finished run; returns its id when imported now.

    Does nothing (returns None) when there is no bundle, when it was trained on
    other data than ``dataset_key`` (the sample files changed since), when the
    store already has a finished run of this dataset, or when this bundle was
    imported into this store before (even if the run was deleted since).  Copies
    the bundle's result (~1-2 MB) into the run folder and saves ``crowd`` (the
    answers) next to it, like a run trained by the dashboard; no torch import.
    """
    meta = bundled_meta(bundle)
    if meta is None or meta.get("dataset_key") != dataset_key:
        return None
    bundle_id = hashlib.blake2b((Path(bundle) / "run.json").read_bytes(), digest_size=5).hexdigest()
    run_id = f"{BUNDLED_PREFIX}{bundle_id}"
    marker = f"imported:{run_id}"
    if st_store.get_meta(marker) is not None:
        return None
    if any(r.status == "done" and r.dataset_key == dataset_key for r in st_store.list(limit=1000)):
        return None
    final = st_store.run_dir(run_id)
    if not (final / "result" / "result.json").is_file():
        tmp = confined(st_store.home / "runs", f".{run_id}-{uuid.uuid4().hex[:6]}")
        try:
            shutil.copytree(Path(bundle) / "result", tmp / "result")
            save_crowd(tmp, crowd)
            try:
                tmp.rename(final)           # atomic; fails when another session got there first
            except OSError:
                if not (final / "result" / "result.json").is_file():   # a leftover of a crash: replace it
                    shutil.rmtree(final, ignore_errors=True)
                    tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    started = meta.get("started")
    try:
        history = json.loads((final / "result" / "result.json").read_text()).get("history") or []
    except (OSError, ValueError):
        history = []
    t0 = float(started) if started is not None else time.time()
    events = [(t0, "log", {"message": f"{BUNDLED_LABEL}: trained with {meta.get('command', 'a script')} "
                                      f"(kdcrowd {(meta.get('code_version') or {}).get('kdcrowd', '?')})"})]
    events += [(t0 + float(e.get("elapsed") or 0.0), "progress", e) for e in history if isinstance(e, dict)]
    events.append((float(meta.get("finished") or t0), "log", {"message": "imported into the dashboard's runs"}))
    summary = meta.get("summary")
    inserted = st_store.import_run(run_id, marker=marker, created=time.time(), started=started,
                                   finished=meta.get("finished"), dataset=meta.get("dataset", "sample data"),
                                   dataset_key=dataset_key, dataset_id=dataset_id, config=meta.get("config") or {},
                                   device=meta.get("device"), summary=summary, result_dir=str(final),
                                   events=events)
    return run_id if inserted else None


def ensure_sample_run(ds) -> None:
    """On the sample, make sure the bundled run is in the store (once per session and dataset; cheap)."""
    if not getattr(ds, "is_sample", False) or st.session_state.get(SAMPLE_CHECKED_KEY) == ds.key:
        return
    st.session_state[SAMPLE_CHECKED_KEY] = ds.key
    try:
        import_bundled_run(store(), ds.crowd, ds.key, dataset_id=getattr(ds, "id", "") or "")
    except Exception as exc:  # noqa: BLE001 - a broken bundle must never take the app down
        _log.warning("could not import the bundled sample run: %s", exc)


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "—"
    s = float(s)
    if s < 60:
        return f"{s:.0f} s"
    m, s = divmod(int(s), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def fmt_time(t: float | None) -> str:
    return "—" if t is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(t))
