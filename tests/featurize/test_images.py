"""Images -> EfficientNet-Lite0 features: separation of drawn shapes, sources, bad input, cache, cancel, content."""
from __future__ import annotations

import io
import threading

import numpy as np
import pandas as pd
import pytest
from feat_inputs import draw, make_zip, nearest_centroid_loo, png_with_header_size

from kdcrowd_core.errors import CrowdDataError
from kdcrowd_core.featurize import FeaturizeCancelled, ItemContent, embed_images, shorten
from kdcrowd_core.featurize.image_decode import preprocess


def test_features_separate_drawn_shapes(image_model, shapes_dir):
    emb = embed_images(shapes_dir, cache_dir=None)
    assert emb.X.shape == (12, 1280) and emb.X.dtype == np.float32 and np.isfinite(emb.X).all()
    assert sorted(emb.ids) == sorted([f"disc{k}" for k in range(6)] + [f"square{k}" for k in range(6)])
    y = np.array([i.rstrip("0123456789") for i in emb.ids])
    assert nearest_centroid_loo(emb.X, y) == 1.0
    assert emb.to_frame().columns[0] == "item" and emb.to_frame().shape == (12, 1281)


def test_preprocessing_matches_efficientnet_lite():
    from PIL import Image
    img = Image.new("RGB", (512, 256), (255, 127, 0))
    a = preprocess(img)
    assert a.shape == (3, 224, 224) and a.dtype == np.float32
    assert np.allclose(a[:, 112, 112], [(255 - 127) / 128, 0.0, -127 / 128], atol=1e-2)


def test_zip_source_with_non_images_zip_slip_and_junk(image_model, tmp_path):
    z = make_zip(tmp_path / "imgs.zip", {
        "photos/disc0.jpg": draw("disc", 0), "photos/square0.jpg": draw("square", 1),
        "photos/readme.txt": b"not an image", "photos/data.csv": b"a,b\n1,2\n",
        "../escape.jpg": draw("disc", 2), "/abs/evil.jpg": draw("disc", 3), "a/../../up.jpg": draw("disc", 4),
        "__MACOSX/photos/._disc0.jpg": b"\0\0", "photos/.DS_Store": b"\0",
    })
    emb = embed_images(z, cache_dir=None)
    assert sorted(emb.ids) == ["disc0", "square0"]
    sk = {s["reason"]: s["count"] for s in emb.report.skipped}
    assert sk["paths escaping the archive's folder (zip-slip: absolute or '..'; not read)"] == 3
    assert sum(c for r, c in sk.items() if r.startswith("not image files")) == 2
    assert sk["macOS resource files (__MACOSX)"] == 1 and sk["hidden files"] == 1
    assert emb.report.items_read == 9 and emb.report.n_skipped == 7
    by_path = embed_images(z, ids="path", cache_dir=None)
    assert sorted(by_path.ids) == ["photos/disc0.jpg", "photos/square0.jpg"]


def test_corrupt_truncated_and_bomb_images_are_counted(image_model, tmp_path):
    good = draw("disc", 0)
    z = make_zip(tmp_path / "bad.zip", {
        "ok.jpg": good, "truncated.jpg": good[: len(good) // 3], "garbage.jpg": b"\xff\xd8\xff" + b"\x13" * 300,
        "text.png": b"hello, not a png", "bomb.png": png_with_header_size(40000, 40000),
    })
    emb = embed_images(z, cache_dir=None)
    assert list(emb.ids) == ["ok"]
    sk = {s["reason"]: s for s in emb.report.skipped}
    bomb = sk["images over the decompression-bomb limit (too many pixels; not decoded)"]
    assert bomb["count"] == 1 and bomb["examples"][0].startswith("bomb.png")
    corrupt = sk["corrupt, truncated or unreadable image files"]
    not_img = sk["files with an image extension that are not images"]
    assert corrupt["count"] + not_img["count"] == 3
    assert any("truncated.jpg" in e for e in corrupt["examples"])
    # a stricter pixel limit turns ordinary images into refused ones
    with pytest.raises(CrowdDataError, match="no image could be used"):
        embed_images(z, cache_dir=None, max_pixels=100)


def test_empty_zip_and_zip_without_images(tmp_path):
    with pytest.raises(CrowdDataError, match="the zip archive is empty") as e:
        embed_images(make_zip(tmp_path / "empty.zip", {}), cache_dir=None)
    assert "empty.zip" in str(e.value) and "Fix:" in str(e.value)
    with pytest.raises(CrowdDataError, match="none of its 2 files is an image"):
        embed_images(make_zip(tmp_path / "txt.zip", {"a.txt": b"x", "b.csv": b"y"}), cache_dir=None)
    notzip = tmp_path / "fake.zip"
    notzip.write_bytes(b"this is not a zip")
    with pytest.raises(CrowdDataError, match="not a readable zip"):
        embed_images(notzip, cache_dir=None)
    with pytest.raises(CrowdDataError, match="no such folder or zip"):
        embed_images(tmp_path / "nowhere", cache_dir=None)


def test_id_clash_asks_for_path_ids(tmp_path):
    z = make_zip(tmp_path / "c.zip", {"a/x.jpg": draw("disc", 0), "b/x.jpg": draw("disc", 1)})
    with pytest.raises(CrowdDataError, match="same item id") as e:
        embed_images(z, cache_dir=None, flags={"ids": "--image-ids"})
    assert "--image-ids path" in str(e.value)


def test_image_paths_column_confined_to_the_table_folder(image_model, shapes_dir, tmp_path):
    (tmp_path / "outside.jpg").write_bytes(draw("disc", 9))
    table = shapes_dir / "items.csv"
    pd.DataFrame({"item": ["i1", "i2", "i3", "i4"],
                  "image": ["disc0.jpg", "square1.jpg", "../outside.jpg", "missing.jpg"]}).to_csv(table, index=False)
    emb = embed_images(table, from_table=True, cache_dir=None)
    assert list(emb.ids) == ["i1", "i2"]
    reasons = " | ".join(f"{s['count']} {s['reason']}" for s in emb.report.skipped)
    assert "1 image paths outside" in reasons and "1 image files not found" in reasons


def test_unknown_items_cache_progress_and_cancel(image_model, shapes_dir, tmp_path):
    known = ["disc0", "disc1", "square0", "nothere"]
    calls = []
    emb = embed_images(shapes_dir, known_items=known, cache_dir=tmp_path / "c", batch_size=2,
                       progress=lambda d, n: calls.append((d, n)))
    assert sorted(emb.ids) == ["disc0", "disc1", "square0"]
    assert emb.report.skipped[0]["count"] == 9 and "not in the answers" in emb.report.skipped[0]["reason"]
    assert calls[0] == (9, 12) and calls[-1] == (12, 12)
    assert emb.report.computed == 3
    again = embed_images(shapes_dir, cache_dir=tmp_path / "c", batch_size=4)
    assert again.report.from_cache == 3 and again.report.computed == 9
    third = embed_images(shapes_dir, cache_dir=tmp_path / "c")
    assert third.report.from_cache == 12 and third.report.computed == 0
    assert np.allclose(third.X, again.X, atol=1e-5)
    # cancel after the first batch: FeaturizeCancelled, and what was computed stays cached
    stop = threading.Event()
    with pytest.raises(FeaturizeCancelled):
        embed_images(shapes_dir, cache_dir=tmp_path / "c2", batch_size=2, progress=lambda d, n: d and stop.set(),
                     cancel=stop)
    resumed = embed_images(shapes_dir, cache_dir=tmp_path / "c2", batch_size=2)
    assert resumed.report.from_cache == 2 and resumed.report.computed == 10


def test_item_content_for_display(shapes_dir, tmp_path):
    from PIL import Image
    content = ItemContent.from_images(shapes_dir)
    assert content.kind == "images" and "disc0" in content and len(content) == 12
    png = content.thumbnail("disc0", max_side=32)
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and max(img.size) == 32
    assert content.thumbnail("nope") is None
    jpg = content.thumbnail("square1", format="JPEG")
    assert jpg[:2] == b"\xff\xd8"
    z = make_zip(tmp_path / "b.zip", {"bad.jpg": b"\xff\xd8\xff garbage", "ok.png": _png()})
    zc = ItemContent.from_images(z)
    assert zc.thumbnail("bad") is None and zc.thumbnail("ok")[:4] == b"\x89PNG"
    t = tmp_path / "t.csv"
    long_text = "word " * 100
    pd.DataFrame({"item": ["a", "b"], "text": ["<b>short</b>", long_text]}).to_csv(t, index=False)
    tc = ItemContent.from_texts(t)
    assert tc.kind == "texts" and tc.text("a") == "<b>short</b>" and tc.thumbnail("a") is None
    s = tc.short_text("b", 40)
    assert len(s) <= 40 and s.endswith("…") and tc.text("b") == long_text
    assert shorten("a\nb   c") == "a b c"


def _png() -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGBA", (20, 10), (0, 255, 0, 128)).save(buf, format="PNG")
    return buf.getvalue()
