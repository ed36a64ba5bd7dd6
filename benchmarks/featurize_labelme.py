"""Image features on real photographs: the 500 LabelMe validation JPEGs through `kdcrowd embed --images`.

A logistic regression on the 1280-d EfficientNet-Lite0 features with the images' gold classes,
5-fold stratified cross-validation: a wrong resize, crop or normalisation shows up as a drop in
accuracy (issue 8 asks for at least 0.90).  ``--compare`` also embeds the images with the
0.485/0.229-style ImageNet normalisation instead of the Lite models' (x - 127) / 128, in process.

    python benchmarks/featurize_labelme.py [--compare]

Reads ../shared/datasets/labelme/raw_valid (or $KDCROWD_DATA/labelme/raw_valid); writes
docs/benchmarks_featurize_labelme.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def raw_valid_dir() -> Path:
    env = os.environ.get("KDCROWD_DATA")
    base = Path(env) if env else ROOT.parent / "shared" / "datasets"
    return base / "labelme" / "raw_valid"


def gold_of(folder: Path) -> pd.Series:
    names = (folder / "filenames_valid.txt").read_text().split()
    classes = (folder / "labels_valid_names.txt").read_text().split()
    return pd.Series(classes, index=[Path(n).stem for n in names], name="label")


def cv_accuracy(X: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1))
    s = cross_val_score(clf, X, y, cv=StratifiedKFold(5, shuffle=True, random_state=seed))
    return float(s.mean()), float(s.std())


def embed_with_cli(folder: Path, out: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "kdcrowd_core.cli", "-q", "embed", "--images", str(folder),
                        "-o", str(out), "--no-cache"], env=env, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"kdcrowd embed failed ({r.returncode}): {r.stderr.strip()}")
    print(r.stdout.strip())
    return secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare", action="store_true", help="also measure ImageNet 0.485/0.229 normalisation")
    args = ap.parse_args()
    folder = raw_valid_dir()
    if not folder.is_dir():
        sys.exit(f"LabelMe validation photographs not found at {folder}")
    gold = gold_of(folder)
    from kdcrowd_core.io import read_features
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "labelme_valid_features.parquet"
        secs = embed_with_cli(folder, out)
        X, ids, _ = read_features(out)
        y = gold.reindex(ids).to_numpy()
        assert not pd.isna(y).any(), "every embedded image has a gold class"
        m, s = cv_accuracy(X, y)
        rows.append(("Lite: (x - 127) / 128 (kdcrowd's pipeline, via `kdcrowd embed --images`)", len(ids), m, s,
                     len(ids) / secs))
        print(f"lite normalisation: 5-fold accuracy {m:.4f} ± {s:.4f} on {len(ids)} images, "
              f"{len(ids) / secs:.1f} images/s end to end")
    if args.compare:
        from kdcrowd_core.featurize import embed_images, image_decode
        mean = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
        std = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255
        image_decode.LITE_MEAN, image_decode.LITE_STD = mean, std
        t0 = time.perf_counter()
        emb = embed_images(folder, cache_dir=None)
        secs2 = time.perf_counter() - t0
        y2 = gold.reindex(emb.ids).to_numpy()
        m2, s2 = cv_accuracy(emb.X, y2)
        rows.append(("ImageNet: (x/255 - 0.485..) / 0.229.. (not adopted)", len(emb.ids), m2, s2,
                     len(emb.ids) / secs2))
        print(f"imagenet normalisation: 5-fold accuracy {m2:.4f} ± {s2:.4f}")
    lines = ["## Image features on real photographs (LabelMe validation, 500 JPEGs)", "",
             f"`python benchmarks/featurize_labelme.py{' --compare' if args.compare else ''}` on "
             f"{platform.node() or 'this machine'} ({os.cpu_count()} CPUs, shared with other jobs), "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
             "EfficientNet-Lite0 ImageNet features (centre crop 224/256, bicubic 224 x 224, average-pooled 1280-d), "
             "then a logistic regression (standardised features, C = 0.1) on the gold classes, 5-fold stratified "
             "cross-validation. Target: at least 0.90.", "",
             "| normalisation | images | 5-fold accuracy | images/s (end to end, this run) |", "|---|---:|---:|---:|"]
    for name, n, m, s, ips in rows:
        lines.append(f"| {name} | {n} | {m:.3f} ± {s:.3f} | {ips:.1f} |")
    lines += ["", "The throughput here was measured on a machine busy with other work; see the featurize speed "
              "benchmark for a ratio against the bare model.", ""]
    (ROOT / "docs" / "benchmarks_featurize_labelme.md").write_text("\n".join(lines))
    print("-> docs/benchmarks_featurize_labelme.md")


if __name__ == "__main__":
    main()
