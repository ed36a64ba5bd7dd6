"""Real photographs: LabelMe validation JPEGs -> EfficientNet-Lite0 features separate the 8 scene classes.

The full check (500 images, 5-fold accuracy >= 0.90) is benchmarks/featurize_labelme.py; this test
embeds the first 10 photos of each class (80) to stay fast and asks for a clearly-better-than-chance
linear fit (a broken decode, crop or normalisation falls far below it).
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

pytestmark = pytest.mark.datasets


def test_labelme_photos_separate_scene_classes(image_model, shared_datasets, tmp_path):
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from kdcrowd_core.featurize import embed_images
    folder = shared_datasets / "labelme" / "raw_valid"
    if not folder.is_dir():
        pytest.skip(f"LabelMe validation photographs not found at {folder}")
    sub = tmp_path / "photos"
    for cls in sorted(p for p in folder.iterdir() if p.is_dir()):
        (sub / cls.name).mkdir(parents=True)
        for f in sorted(cls.glob("*.jpg"))[:10]:
            shutil.copyfile(f, sub / cls.name / f.name)  # copies: links leaving the folder are refused
    emb = embed_images(sub, ids="path", cache_dir=None)
    assert emb.X.shape == (80, 1280)
    y = np.array([i.split("/")[0] for i in emb.ids])
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1))
    acc = cross_val_score(clf, emb.X, y, cv=StratifiedKFold(5, shuffle=True, random_state=0)).mean()
    assert acc >= 0.75, acc
