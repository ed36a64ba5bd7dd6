"""The `kdcrowd` command: every command, its outputs and its errors."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from kdcrowd_core.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def simdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim")
    assert main(["-q", "simulate", "--items", "300", "--classes", "4", "--workers", "20", "--features", "8",
                 "--gold-fraction", "0.2", "--test", "100", "--seed", "1", "-o", str(d)]) == 0
    return d


def test_help_for_every_command(capsys):
    for cmd in ([], ["validate"], ["aggregate"], ["workers"], ["simulate"], ["train"]):
        with pytest.raises(SystemExit) as e:
            main(cmd + ["--help"])
        assert e.value.code == 0
        assert "usage: kdcrowd" in capsys.readouterr().out


def test_console_script_installed():
    exe = shutil.which("kdcrowd")
    if exe is None:
        pytest.skip("kdcrowd console script not on PATH (package not pip-installed)")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "aggregate" in out.stdout


def test_simulate_writes_files(simdir):
    for f in ("answers.csv", "gold.csv", "features.csv", "test_features.csv", "test_gold.csv"):
        assert (simdir / f).is_file(), f


def test_validate_reports(capsys, simdir):
    code, out, _ = run(capsys, "validate", simdir / "answers.csv", "--gold", simdir / "gold.csv",
                       "--features", simdir / "features.csv")
    assert code == 0
    assert "answers kept" in out and "300 items" in out and "(gold)" in out and "(features)" in out


def test_aggregate_columns_and_accuracy(capsys, simdir, tmp_path):
    out_csv = tmp_path / "labels.csv"
    code, out, _ = run(capsys, "-q", "aggregate", simdir / "answers.csv", "--gold", simdir / "gold.csv",
                       "-o", out_csv)
    assert code == 0
    df = pd.read_csv(out_csv)
    assert list(df.columns[:3]) == ["item", "label", "confidence"]
    probs = [c for c in df.columns if c.startswith("prob_")]
    assert len(probs) == 4
    np.testing.assert_allclose(df[probs].sum(axis=1), 1.0, atol=1e-6)
    assert len(df) == 300
    acc_line = [l for l in out.splitlines() if l.startswith("accuracy against gold")]
    assert acc_line and 0.5 < float(acc_line[0].split(":")[-1]) <= 1.0
    # another method by name
    code, _, _ = run(capsys, "-q", "aggregate", simdir / "answers.csv", "--method", "mv", "-o", tmp_path / "mv.csv")
    assert code == 0 and pd.read_csv(tmp_path / "mv.csv").shape[0] == 300


def test_workers_table_and_matrices(capsys, simdir, tmp_path):
    code, _, _ = run(capsys, "-q", "workers", simdir / "answers.csv", "--gold", simdir / "gold.csv",
                     "-o", tmp_path / "w.csv", "--matrices", tmp_path / "m.json")
    assert code == 0
    w = pd.read_csv(tmp_path / "w.csv")
    assert {"worker", "answers", "accuracy", "agreement", "spammer_score"} <= set(w.columns)
    assert len(w) == 20
    m = json.loads((tmp_path / "m.json").read_text())
    assert len(m["classes"]) == 4 and len(m["workers"]) == 20
    mat = np.array(next(iter(m["workers"].values())))
    np.testing.assert_allclose(mat.sum(axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("content, needle", [
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, ""),
    (b"a,b,c\n1,2,3\n4,5,6\n", ""),
])
def test_bad_input_exit_2_one_line(capsys, tmp_path, content, needle):
    f = tmp_path / "bad.csv"
    f.write_bytes(content)
    code, out, err = run(capsys, "aggregate", f, "-o", tmp_path / "o.csv")
    assert code == 2
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and "bad.csv" in lines[0] and "Traceback" not in err
    assert needle in lines[0].lower()


def test_missing_file_and_unknown_method(capsys, simdir, tmp_path):
    code, _, err = run(capsys, "validate", tmp_path / "nope.csv")
    assert code == 2 and "nope.csv" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "aggregate", simdir / "answers.csv", "--method", "magic", "-o", tmp_path / "o.csv")
    assert code == 2 and "unknown inference method" in err


@pytest.mark.datasets
def test_cli_on_real_datasets(capsys, shared_datasets, tmp_path):
    lm = shared_datasets / "labelme" / "answers.txt"
    code, out, _ = run(capsys, "validate", lm)
    assert code == 0 and "1000 items" in out and "59 workers" in out
    code, _, _ = run(capsys, "-q", "aggregate", lm, "-o", tmp_path / "lm.csv")
    assert code == 0
    pred = pd.read_csv(tmp_path / "lm.csv")
    truth = np.loadtxt(shared_datasets / "labelme" / "LabelMe_Z_train.txt", dtype=int)
    assert (pred.sort_values("item")["label"].to_numpy() == truth).mean() > 0.78
    mu = shared_datasets / "music_genre" / "mturk_answers.csv"
    code, out, _ = run(capsys, "validate", mu)
    assert code == 0 and "700 items" in out and "44 workers" in out
    code, _, _ = run(capsys, "-q", "workers", mu, "-o", tmp_path / "mw.csv")
    assert code == 0 and len(pd.read_csv(tmp_path / "mw.csv")) == 44


def test_train_writes_run_folder(capsys, simdir, tmp_path):
    pytest.importorskip("kdcrowd_core.kd")
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "train", simdir / "answers.csv", "--features", simdir / "features.csv",
                            "--gold", simdir / "gold.csv", "--test-features", simdir / "test_features.csv",
                            "--test-gold", simdir / "test_gold.csv", "--epochs", "3", "--device", "cpu",
                            "--out", out)
    assert code == 0, err
    labels = pd.read_csv(out / "labels.csv")
    for m in ("mv", "ds", "teacher", "student", "stage2"):
        assert m in labels.columns and f"{m}_confidence" in labels.columns
    assert labels.columns[0] == "item" and len(labels) == 300
    tp = pd.read_csv(out / "test_predictions.csv")
    assert list(tp.columns[:4]) == ["item", "teacher", "student", "stage2"] and len(tp) == 100
    s = json.loads((out / "summary.json").read_text())
    assert set(s["train_accuracy"]) == {"mv", "ds", "teacher", "student", "stage2"}
    assert set(s["test_accuracy"]) == {"teacher", "student", "stage2", "mv", "ds"}   # + MV / DS baselines
    assert all(0 <= v <= 1 for v in s["test_accuracy"].values())
    wm = json.loads((out / "worker_matrices.json").read_text())
    assert {"before", "after"} <= set(wm)
    w = pd.read_csv(out / "workers.csv")
    assert "accuracy_before" in w.columns and "accuracy_after" in w.columns


def test_train_bad_features_exit_2(capsys, simdir, tmp_path):
    pytest.importorskip("kdcrowd_core.kd")
    bad = tmp_path / "f.csv"
    bad.write_text("item,f0\nnot_an_item,1.0\n")
    code, _, err = run(capsys, "train", simdir / "answers.csv", "--features", bad, "--out", tmp_path / "r")
    assert code == 2 and "f.csv" in err and "Traceback" not in err


def test_train_leaves_validation_items_out_of_training(capsys, simdir, tmp_path):
    """Validation items that also have answers leave training (unbiased selection), unless asked to stay."""
    pytest.importorskip("kdcrowd_core.kd")
    gold = pd.read_csv(simdir / "gold.csv")
    feats = pd.read_csv(simdir / "features.csv")
    vg = gold.iloc[: len(gold) // 2]
    vg.to_csv(tmp_path / "vg.csv", index=False)
    feats[feats["item"].isin(vg["item"])].to_csv(tmp_path / "vf.csv", index=False)
    common = ["train", simdir / "answers.csv", "--features", simdir / "features.csv", "--gold", simdir / "gold.csv",
              "--valid-features", tmp_path / "vf.csv", "--valid-gold", tmp_path / "vg.csv",
              "--epochs", "2", "--device", "cpu"]
    code, _, err = run(capsys, *common, "--out", tmp_path / "a")
    assert code == 0, err
    assert f"{len(vg)} validation items" in err
    labels = pd.read_csv(tmp_path / "a" / "labels.csv")
    assert len(labels) == 300 - len(vg) and not labels["item"].isin(vg["item"]).any()
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["validation_items_left_out_of_training"] == len(vg) and s["valid_accuracy"]
    code, _, err = run(capsys, "-q", *common, "--keep-valid-in-training", "--out", tmp_path / "b")
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "b" / "labels.csv")) == 300
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["validation_items_left_out_of_training"] == 0
