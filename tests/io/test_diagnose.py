"""Id diagnosis: counts, examples and the proposed id transform; wired into load_crowd and the CLI."""
from __future__ import annotations

import numpy as np
import pytest

from kdcrowd_core.cli import main
from kdcrowd_core.errors import CrowdDataError
from kdcrowd_core.io import ReadOptions, load_crowd
from kdcrowd_core.io.diagnose import diagnose_ids

URLS = [f"https://cdn.toloka.ai/img/Photo_{i}.JPG?x=1" for i in range(20)]


@pytest.mark.parametrize("other,expected", [
    ([f"Photo_{i}.JPG" for i in range(20)], ("strip", "filename")),
    ([f"Photo_{i}" for i in range(20)], ("strip", "filename", "stem")),
    ([f"photo_{i}.jpg" for i in range(20)], ("strip", "filename", "lower")),
    ([f"photo_{i}" for i in range(20)], ("strip", "filename", "stem", "lower")),
])
def test_diagnosis_proposes_the_transform_that_matches(other, expected):
    d = diagnose_ids(URLS, other, what="features")
    assert d.n_matched == 0 and not d.ok
    assert d.proposed_transform == expected and d.n_matched_proposed == 20
    assert d.example_answer_id in URLS and d.example_other_id in other
    cli = d.hint("cli")
    assert "--id-transform" in cli and "20 ids match" in cli
    assert "'Item id transform'" in d.hint("dashboard") and "id_transform=" in d.hint("library")
    assert str(d.n_matched) in d.message("cli") and repr(d.example_other_id) in d.message("cli")


def test_diagnosis_when_ids_match_or_nothing_helps():
    ok = diagnose_ids([1, 2, 3], [3, 2, 1, 4], what="features")
    assert ok.ok and ok.proposed_transform is None and ok.hint() is None
    none = diagnose_ids(["a", "b"], ["x", "y"], what="gold")
    assert not none.ok and none.proposed_transform is None and "no id transform" in none.hint("cli")
    gold = diagnose_ids(["a", "b", "c"], ["a"], what="gold")
    assert gold.ok  # gold for some items is fine
    partial = diagnose_ids(["a.png", "b.png", "c"], ["a", "b", "c"], what="features")
    assert partial.n_matched == 1 and partial.proposed_transform == ("strip", "stem")


def test_diagnosis_of_row_numbers_names_feature_ids():
    d = diagnose_ids(["img1", "img2"], [0, 1], what="features", row_numbers=True)
    assert "--feature-ids" in d.hint("cli") and "'Feature ids file'" in d.hint("dashboard")
    assert d.error().option == "feature_ids"


def _toloka(tmp_path, n=6):
    p = tmp_path / "toloka.tsv"
    p.write_text("INPUT:image\tOUTPUT:result\tASSIGNMENT:worker_id\n"
                 + "".join(f"https://cdn.x.org/img/p{i}.jpg\t{'ab'[(i + w) % 2]}\tw{w}\n"
                           for i in range(n) for w in range(3)))
    return p


def test_load_crowd_explains_a_mismatch_and_the_fix_works(tmp_path):
    ans = _toloka(tmp_path)
    feat = tmp_path / "features.csv"
    feat.write_text("item,f1\n" + "".join(f"p{i},{i}\n" for i in range(6)))
    with pytest.raises(CrowdDataError) as e:
        load_crowd(ans, features=feat)
    assert "features.csv" in str(e.value) and "match 0 of the 6" in str(e.value)
    assert e.value.option == "id_transform" and "'file name without extension'" in e.value.render("cli")
    d = load_crowd(ans, features=feat, options=ReadOptions(id_transform="file name without extension"))
    assert d.features.shape == (6, 1)


def test_gold_mismatch_is_diagnosed(tmp_path):
    ans = _toloka(tmp_path)
    gold = tmp_path / "gold.csv"
    gold.write_text("item,truth\n" + "".join(f"P{i}.JPG,a\n" for i in range(3)))
    with pytest.raises(CrowdDataError) as e:
        load_crowd(ans, gold=gold)
    assert "gold.csv" in str(e.value) and "--id-transform" in e.value.render("cli")
    d = load_crowd(ans, gold=gold, options=ReadOptions(id_transform="file name, lower-case"))
    assert int(d.gold_mask.sum()) == 3
    d2 = load_crowd(ans, gold=gold, options=ReadOptions(allow_unknown_items=True))
    assert int(d2.gold_mask.sum()) == 0


def test_npy_features_without_ids_name_the_cli_option(tmp_path, capsys):
    ans = tmp_path / "a.csv"
    ans.write_text("item,worker,label\n" + "".join(f"img{i},w{w},{'ab'[(i + w) % 2]}\n"
                                                    for i in range(5) for w in range(3)))
    np.save(tmp_path / "X.npy", np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32))
    rc = main(["validate", str(ans), "--features", str(tmp_path / "X.npy")])
    err = capsys.readouterr().err
    assert rc == 2 and "X.npy" in err and "--feature-ids" in err and "Traceback" not in err
    (tmp_path / "ids.txt").write_text("".join(f"img{i}\n" for i in range(5)))
    assert main(["validate", str(ans), "--features", str(tmp_path / "X.npy"),
                 "--feature-ids", str(tmp_path / "ids.txt")]) == 0
    assert "ready for kdcrowd train" in capsys.readouterr().out


def test_validate_runs_the_checks_train_runs(tmp_path, capsys):
    """validate used to pass feature files that train refused (rows for unknown items; too few items)."""
    ans = tmp_path / "a.csv"
    ans.write_text("item,worker,label\n" + "".join(f"i{i},w{w},{'ab'[(i + w) % 2]}\n"
                                                    for i in range(3) for w in range(3)))
    feat = tmp_path / "f.csv"
    feat.write_text("item,x\n" + "".join(f"i{i},{i}\n" for i in range(3)) + "unknown,9\n")
    for cmd in (["validate", str(ans), "--features", str(feat)],
                ["train", str(ans), "--features", str(feat), "--out", str(tmp_path / "run"), "--epochs", "1"]):
        assert main(["-q", *cmd]) == 2
        err = capsys.readouterr().err
        assert "f.csv" in err and "no answers" in err and "--allow-unknown-items" in err
    for cmd in (["validate", str(ans), "--features", str(feat), "--allow-unknown-items"],
                ["train", str(ans), "--features", str(feat), "--allow-unknown-items", "--out", str(tmp_path / "r"),
                 "--epochs", "1"]):
        assert main(["-q", *cmd]) == 2
        err = capsys.readouterr().err
        assert "a.csv" in err and "at least 4 items" in err and "kdcrowd aggregate" in err
