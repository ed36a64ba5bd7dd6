"""Item content -> features in the background: one thread per dataset, progress in a shared object, no st.*.

The Data page starts :func:`start` with the dataset's item content (a texts
table or a zip of images); the thread runs :mod:`kdcrowd_core.featurize`
(MiniLM for texts, EfficientNet-Lite0 for images) with a progress callback and
a cancel flag.  The sidebar polls :meth:`FeaturizeJob.snapshot` from a
fragment and, once the job is done, adds the features to the dataset like an
uploaded features file (``state.add_built_features``).  Nothing here touches
Streamlit, so the thread is safe and the module unit-testable.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kdcrowd_core.errors import CrowdDataError

ACTIVE = ("queued", "running")


@dataclass
class FeaturizeJob:
    """One featurizing job's live state (guarded by ``lock``)."""

    dataset_id: str
    content_name: str
    content_kind: str            # "texts" or "images"
    status: str = "queued"       # queued, running, done, failed, cancelled
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.time)
    finished: float | None = None
    error: str | None = None
    result: Any = None           # kdcrowd_core.featurize.Embeddings when done
    applied: bool = False        # the features were added to the dataset
    cancel: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    def progress(self, done: int, total: int) -> None:
        with self.lock:
            self.done, self.total = int(done), int(total)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            frac = self.done / self.total if self.total else 0.0
            if self.status == "done":
                frac = 1.0
            return {"status": self.status, "done": self.done, "total": self.total, "fraction": min(frac, 1.0),
                    "error": self.error, "elapsed": (self.finished or time.time()) - self.started,
                    "kind": self.content_kind, "name": self.content_name}

    def features_csv(self) -> bytes:
        """The embeddings as a features table (``item`` column, then one column per dimension)."""
        emb = self.result
        df = emb.to_frame()
        return df.to_csv(index=False, float_format="%.6g").encode()


def content_kind(name: str) -> str:
    """``"images"`` for a zip of pictures, else ``"texts"`` (an items table)."""
    return "images" if str(name).lower().endswith(".zip") else "texts"


def _work(job: FeaturizeJob, payload: bytes, text_options: dict[str, Any], data_dir: str | None) -> None:
    from kdcrowd_core import featurize
    job.status = "running"
    common = {"name": job.content_name, "progress": job.progress, "cancel": job.cancel, "data_dir": data_dir,
              "flags": {"item": "the item id column of the item content file",
                        "column": "the text column of the item content file",
                        "keep_first": "one text per item in the item content file",
                        "ids": "item ids from the image file names"}}
    try:
        if job.content_kind == "images":
            emb = featurize.embed_images(payload, **common)
        else:
            emb = featurize.embed_texts(payload, item=text_options.get("item"), text=text_options.get("text"),
                                        on_duplicate="first", **common)
        if not len(emb.ids):
            raise CrowdDataError("no item got features from this content.", path=job.content_name,
                                 hint="check that it holds texts or pictures of the annotated items.")
        job.result = emb
        job.status = "done"
    except featurize.FeaturizeCancelled:
        job.status = "cancelled"
    except CrowdDataError as exc:
        render = getattr(exc, "render", None)
        job.error = render("dashboard") if callable(render) else str(exc)
        job.status = "failed"
    except BaseException as exc:  # noqa: BLE001 - every failure is reported, none escapes the thread
        job.error = f"{type(exc).__name__}: {exc}"
        job.status = "failed"
    finally:
        job.finished = time.time()


def start(registry: dict[str, FeaturizeJob], lock: threading.Lock, *, dataset_id: str, payload: bytes, name: str,
          text_options: dict[str, Any] | None = None, data_dir: str | None = None) -> FeaturizeJob:
    """Start featurizing ``payload`` (texts table or images zip) for ``dataset_id``; one job per dataset."""
    with lock:
        old = registry.get(dataset_id)
        if old is not None and old.is_active:
            return old
        job = FeaturizeJob(dataset_id=dataset_id, content_name=name, content_kind=content_kind(name))
        registry[dataset_id] = job
    t = threading.Thread(target=_work, args=(job, payload, dict(text_options or {}), data_dir),
                         name=f"kdcrowd-featurize-{dataset_id[:8]}", daemon=True)
    job.thread = t
    t.start()
    return job

