"""Streaming images keeps memory flat: no batch's arrays outlive the batch.

Keeping each batch's feature array alive (for instance as row views collected in a list until
the end) pinned the allocator's heap between every batch's short-lived decode and network
buffers: resident memory grew by about 0.1 MB per image (peak 2.51 GB at 10,000 images in
benchmarks/featurize_speed.py).  These tests watch every array the pipeline hands over per
batch (the network's input and output, the cache's vectors) through weak references: each must
be gone when the batch's progress is reported.
"""
from __future__ import annotations

import weakref

import numpy as np
import pytest
from feat_inputs import draw, make_zip

import kdcrowd_core.featurize.images as images_mod
from kdcrowd_core.featurize import embed_images
from kdcrowd_core.featurize.cache import EmbeddingCache


class BatchArrays:
    """Weak references to the arrays of each batch, and the feature rows the network returned."""

    def __init__(self):
        self.refs: list[weakref.ref] = []
        self.rows: list[np.ndarray] = []      # copies, in order, to check the output matrix
        self.alive_at_progress: list[int] = []

    def watch(self, a: np.ndarray) -> np.ndarray:
        self.refs.append(weakref.ref(a))
        return a

    def alive(self) -> int:
        return sum(r() is not None for r in self.refs)

    def progress(self, done: int, total: int) -> None:
        self.alive_at_progress.append(self.alive())


@pytest.fixture
def watched(monkeypatch) -> BatchArrays:
    seen = BatchArrays()
    real_encode, real_get = images_mod.encode_images, EmbeddingCache.get_many

    def encode(batch, *, device="auto"):
        out = real_encode(seen.watch(batch), device=device)
        seen.rows.extend(out.copy())
        return seen.watch(out)

    def get_many(self, keys):
        found = real_get(self, keys)
        for v in found.values():
            seen.watch(v)
        return found

    monkeypatch.setattr(images_mod, "encode_images", encode)
    monkeypatch.setattr(EmbeddingCache, "get_many", get_many)
    return seen


def test_no_batch_array_outlives_its_batch(image_model, watched, tmp_path):
    members = {f"img{k:02d}.jpg": draw("disc" if k % 2 else "square", k) for k in range(9)}
    members["img04.jpg"] = b"\xff\xd8\xff" + b"\x13" * 200          # a corrupt one mid-stream
    z = make_zip(tmp_path / "imgs.zip", members)
    emb = embed_images(z, cache_dir=tmp_path / "cache", batch_size=2, progress=watched.progress)
    assert len(watched.refs) == 2 * 5                 # 5 batches: input and output arrays each
    assert watched.alive_at_progress[1:] == [0] * 5, "a batch's arrays were still referenced after it"
    # the output rows are the network's rows, in order, with the corrupt image's row left out
    assert list(emb.ids) == [f"img{k:02d}" for k in range(9) if k != 4]
    assert np.array_equal(emb.X, np.stack(watched.rows))
    assert emb.X.flags.owndata and emb.X.flags.c_contiguous and emb.X.dtype == np.float32

    # the same images again, all from the cache: the cache's vectors are copied out as well
    watched.refs.clear()
    watched.alive_at_progress.clear()
    again = embed_images(z, cache_dir=tmp_path / "cache", batch_size=2, progress=watched.progress)
    assert again.report.from_cache == 8 and len(watched.refs) == 8
    assert watched.alive_at_progress[1:] == [0] * 5
    assert np.array_equal(again.X, emb.X) and again.X.flags.owndata
