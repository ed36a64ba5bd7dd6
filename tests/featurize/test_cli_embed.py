"""`kdcrowd embed` end to end: images and texts to a features table, then `kdcrowd train --features`."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from feat_inputs import NEGATIVE, POSITIVE, make_zip

from kdcrowd_core.cli import main
from kdcrowd_core.io import read_features


def _crowd(items: list[str], truth: list[str], classes: list[str], path, seed: int = 0):
    """5 workers, each right 80% of the time."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, t in zip(items, truth):
        for w in range(5):
            lab = t if rng.random() < 0.8 else rng.choice([c for c in classes if c != t])
            rows.append({"item": i, "worker": f"w{w}", "label": lab})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_embed_images_then_train(image_model, shapes_dir, tmp_path, capsys):
    z = make_zip(tmp_path / "shapes.zip", {p.name: p.read_bytes() for p in shapes_dir.iterdir()}
                 | {"notes.txt": b"hello"})
    feats = tmp_path / "features.csv"
    rc = main(["embed", "--images", str(z), "-o", str(feats), "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "12 items x 1280 features" in out.out and "skipped 1: not image files" in out.out
    X, ids, names = read_features(feats)
    assert X.shape == (12, 1280) and names[0] == "effnet_0"
    items = sorted(ids)
    answers = _crowd(items, [i.rstrip("0123456789") for i in items], ["disc", "square"], tmp_path / "answers.csv")
    gold = tmp_path / "gold.csv"
    pd.DataFrame({"item": items, "label": [i.rstrip("0123456789") for i in items]}).to_csv(gold, index=False)
    run = tmp_path / "run"
    rc = main(["-q", "train", str(answers), "--features", str(feats), "--gold", str(gold), "--epochs", "3",
               "--out", str(run)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    summary = json.loads((run / "summary.json").read_text())
    assert summary and (run / "labels.csv").is_file()


def test_embed_texts_parquet_with_answers_filter(text_model, tmp_path, capsys):
    texts = POSITIVE + NEGATIVE
    items = pd.DataFrame({"doc": [f"d{i}" for i in range(12)], "body": texts})
    table = tmp_path / "items.tsv"
    items.to_csv(table, sep="\t", index=False)
    answers = _crowd([f"d{i}" for i in range(10)], ["pos"] * 6 + ["neg"] * 4, ["pos", "neg"], tmp_path / "a.csv")
    out_p = tmp_path / "f.parquet"
    rc = main(["embed", "--text", str(table), "--item", "doc", "--text-column", "body", "--answers", str(answers),
               "-o", str(out_p), "--no-cache"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "skipped 2: texts for items that are not in the answers" in out.out
    df = pd.read_parquet(out_p)
    assert list(df.columns[:2]) == ["item", "minilm_0"] and df.shape == (10, 385)


def test_embed_bad_input_exits_2_with_a_message(tmp_path, capsys):
    empty = make_zip(tmp_path / "empty.zip", {})
    rc = main(["embed", "--images", str(empty), "-o", str(tmp_path / "f.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and "empty.zip" in err and "empty" in err and "Traceback" not in err
    assert not (tmp_path / "f.csv").exists()
    dup = tmp_path / "dup.csv"
    dup.write_text("item,text\na,one\na,two\n")
    rc = main(["embed", "--text", str(dup), "-o", str(tmp_path / "f.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and "--item" in err and "--keep-first" in err
    rc = main(["embed", "--text", str(dup), "-o", str(tmp_path / "f.xlsx")])
    assert rc == 2 and ".csv" in capsys.readouterr().err
    rc = main(["embed", "--images", str(empty), "--text-column", "x", "-o", str(tmp_path / "f.csv")])
    assert rc == 2 and "--image-ids" in capsys.readouterr().err
