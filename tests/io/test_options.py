"""ReadOptions: each option, each id transform, label normalisation, duplicates, JSON round trip, preview."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from kdcrowd_core.errors import CrowdDataError
from kdcrowd_core.io import ReadOptions, load_crowd, read_answers, read_features, read_gold
from kdcrowd_core.io.options import (ID_TRANSFORM_PRESETS, add_cli_arguments, from_cli_args, parse_id_transform,
                                     parse_label_map, read_label_map, transform_id)
from kdcrowd_core.io.preview import preview_table


def _classes(data):
    return list(data.classes)


# ------------------------------------------------------------------ the object
def test_json_round_trip_keeps_every_field():
    o = ReadOptions(format="long", item="task", worker="annotator", label="genre", gold_item="id",
                    gold_label="truth", features_item="key", feature_ids="ids.txt",
                    id_transform=("filename", "stem"), label_trim=True, label_case_fold=True,
                    label_merge_numbers=True, label_map={"0": "highway", "1": "city"}, classes=("a", "b"),
                    duplicates="last")
    back = ReadOptions.from_json(o.to_json())
    assert back == o
    assert ReadOptions.from_json(ReadOptions().to_json()) == ReadOptions()
    assert ReadOptions().to_dict() == {}  # defaults are not stored
    assert ReadOptions.from_dict(None) == ReadOptions()


def test_bad_options_are_refused_with_the_option_named():
    with pytest.raises(CrowdDataError) as e:
        ReadOptions(duplicates="sometimes")
    assert e.value.option == "duplicates"
    assert "--duplicates" in e.value.render("cli") and "'Repeated answers'" in e.value.render("dashboard")
    with pytest.raises(CrowdDataError, match="unknown reading options"):
        ReadOptions.from_dict({"colour": 1})
    with pytest.raises(CrowdDataError, match="unknown id transform"):
        ReadOptions(id_transform="reverse")
    with pytest.raises(CrowdDataError, match="unknown format"):
        ReadOptions(format="excel")


def test_id_transform_parsing_and_presets():
    assert parse_id_transform("as is") == ()
    assert parse_id_transform(None) == ()
    assert parse_id_transform("stem,filename") == ("filename", "stem")  # canonical order
    assert parse_id_transform(["LOWER", "trim"]) == ("strip", "lower")
    for name, steps in ID_TRANSFORM_PRESETS.items():
        assert parse_id_transform(name) == steps


@pytest.mark.parametrize("value,steps,expected", [
    ("  img1.jpg ", ("strip",), "img1.jpg"),
    ("  img1.jpg ", (), "  img1.jpg "),
    ("https://host.org/a/b/img%201.JPG?sig=3#x", ("filename",), "img 1.JPG"),
    ("C:\\data\\cats\\img1.jpg", ("filename",), "img1.jpg"),
    ("data/cats/img1.jpg", ("filename", "stem"), "img1"),
    ("data/cats/img1.tar.jpg", ("stem",), "data/cats/img1.tar"),
    (".hidden", ("stem",), ".hidden"),
    ("IMG1", ("lower",), "img1"),
    (" HTTP://X/Y/IMG1.PNG ", ("strip", "filename", "stem", "lower"), "img1"),
    (7, ("filename", "stem", "lower"), 7),
])
def test_each_id_transform(value, steps, expected):
    assert transform_id(value, steps) == expected


def test_label_map_text_and_file(tmp_path):
    assert parse_label_map("0=highway, 1=insidecity;2:street") == {"0": "highway", "1": "insidecity",
                                                                    "2": "street"}
    with pytest.raises(CrowdDataError, match="two class names"):
        parse_label_map("0=a,0=b")
    with pytest.raises(CrowdDataError, match="code=name"):
        parse_label_map("0=a,oops")
    p = tmp_path / "names.csv"
    p.write_text("code,name\n0,highway\n1,insidecity\n")
    assert read_label_map(p) == {"0": "highway", "1": "insidecity"}
    p2 = tmp_path / "names.txt"
    p2.write_text("0 highway\n1 inside city\n3\n")
    with pytest.raises(CrowdDataError) as e:
        read_label_map(p2)
    assert "names.txt" in str(e.value) and "line 3" in str(e.value)


def test_cli_flags_build_the_same_object(tmp_path):
    p = argparse.ArgumentParser()
    add_cli_arguments(p)
    m = tmp_path / "map.csv"
    m.write_text("0,highway\n1,city\n")
    args = p.parse_args(["--item", "task", "--id-transform", "filename,stem", "--label-trim", "--label-map", str(m),
                         "--duplicates", "first", "--feature-ids", "ids.txt", "--gold-label", "truth",
                         "--classes", "highway,city"])
    o = from_cli_args(args)
    assert o == ReadOptions(item="task", id_transform=("filename", "stem"), label_trim=True,
                            label_map={"0": "highway", "1": "city"}, duplicates="first", feature_ids="ids.txt",
                            gold_label="truth", classes=("highway", "city"))
    assert from_cli_args(p.parse_args([])) == ReadOptions()
    assert from_cli_args(p.parse_args(["--id-transform", "as is"])).id_transform == ()


# ------------------------------------------------------------------ columns and format
def test_columns_from_options_read_a_label_studio_csv():
    raw = b"annotator,audio,genre,id\n1,a.mp3,rock,10\n2,a.mp3,pop,10\n1,b.mp3,pop,11\n2,b.mp3,pop,11\n"
    with pytest.raises(CrowdDataError) as e:
        read_answers(raw, name="ls.csv")
    assert e.value.option in ("item", "label")
    d = read_answers(raw, name="ls.csv", options=ReadOptions(item="id", label="genre"))
    assert d.n_items == 2 and _classes(d) == ["pop", "rock"]
    # a keyword overrides the options object
    d2 = read_answers(raw, name="ls.csv", options=ReadOptions(item="id", label="audio"), label="genre")
    assert _classes(d2) == ["pop", "rock"]


def test_format_option_forces_the_layout():
    raw = b"item,a,b,c\n1,x,y,x\n2,y,y,x\n"
    assert read_answers(raw, name="w.csv").report[0].format == "wide"
    with pytest.raises(CrowdDataError):
        read_answers(raw, name="w.csv", options=ReadOptions(format="long"))


# ------------------------------------------------------------------ id transforms across files
def test_id_transform_makes_urls_match_file_names(tmp_path):
    ans = tmp_path / "toloka.tsv"
    ans.write_text("INPUT:image\tOUTPUT:result\tASSIGNMENT:worker_id\n"
                   + "".join(f"https://cdn.x.org/img/p{i}.jpg\t{'ab'[(i + w) % 2]}\tw{w}\n"
                             for i in range(6) for w in range(3)))
    feat = tmp_path / "features.csv"
    feat.write_text("item,f1,f2\n" + "".join(f"p{i}.jpg,{i},{i * 2}\n" for i in range(6)))
    with pytest.raises(CrowdDataError, match="missing"):
        load_crowd(ans, features=feat)
    d = load_crowd(ans, features=feat, options=ReadOptions(id_transform="file name"))
    assert d.features.shape == (6, 2) and set(d.item_ids) == {f"p{i}.jpg" for i in range(6)}
    d2 = load_crowd(ans, features=feat, options=ReadOptions(id_transform=("filename", "stem")))
    assert set(d2.item_ids) == {f"p{i}" for i in range(6)}


def test_ids_as_is_keeps_spaces_and_strip_reports_merges():
    raw = b"item,worker,label\na,w1,x\na ,w2,y\nb,w1,y\nb,w2,y\n"
    asis = read_answers(raw, name="s.csv", options=ReadOptions(id_transform="as is"))
    assert asis.n_items == 3
    d = read_answers(raw, name="s.csv")
    assert d.n_items == 2
    assert any("item ids" in n and "count as one" in n for n in d.report[0].notes)


def test_lower_case_transform_on_gold_and_features(tmp_path):
    raw = b"item,worker,label\nIMG1,a,x\nIMG1,b,y\nImg2,a,y\nImg2,b,y\n"
    g = read_gold(b"item,truth\nimg1,x\nimg2,y\n", name="g.csv", options=ReadOptions(id_transform="lower-case"))
    assert sorted(g.index) == ["img1", "img2"]
    d = load_crowd(raw, name="a.csv", gold=tmp_path / "g.csv" if False else None,
                   options=ReadOptions(id_transform="lower-case"))
    assert sorted(d.item_ids) == ["img1", "img2"]
    f = read_features(b"id,f\nIMG1,1\nimg2,2\n", name="f.csv", options=ReadOptions(id_transform="lower"))
    assert list(f.ids) == ["img1", "img2"]


def test_feature_ids_option_for_npy(tmp_path):
    X = np.arange(8, dtype=np.float32).reshape(4, 2)
    np.save(tmp_path / "X.npy", X)
    (tmp_path / "ids.txt").write_text("a\nb\nc\nd\n")
    f = read_features(tmp_path / "X.npy", options=ReadOptions(feature_ids=str(tmp_path / "ids.txt")))
    assert list(f.ids) == ["a", "b", "c", "d"]


# ------------------------------------------------------------------ labels
RAW_LABELS = b"item,worker,label\n1,a,01\n1,b, 1\n2,a,1.0\n2,b,2\n3,a,2\n3,b,01\n"


def test_distinct_raw_labels_stay_distinct():
    d = read_answers(RAW_LABELS, name="l.csv")
    assert sorted(map(str, d.classes)) == ["01", "1", "1.0", "2"]  # " 1" lost its space: it merged nothing
    notes = " ".join(d.report[0].notes)
    assert "same number written differently" in notes


def test_label_trim_and_merge_numbers_merge_on_request():
    d = read_answers(RAW_LABELS, name="l.csv", options=ReadOptions(label_merge_numbers=True))
    assert _classes(d) == [1, 2]
    assert any("label_merge_numbers" in n for n in d.report[0].notes)
    t = read_answers(b"item,worker,label\n1,a,cat\n1,b, cat\n2,a,dog\n2,b,dog\n", name="t.csv")
    assert sorted(t.classes) == [" cat", "cat", "dog"]
    t2 = read_answers(b"item,worker,label\n1,a,cat\n1,b, cat\n2,a,dog\n2,b,dog\n", name="t.csv",
                      options=ReadOptions(label_trim=True))
    assert _classes(t2) == ["cat", "dog"]


def test_harmless_cleanup_still_happens():
    d = read_answers(b"item,worker,label\n1,a, cat\n1,b, dog\n2,a,3\n", name="h.csv")
    assert sorted(d.classes, key=str) == ["3", "cat", "dog"]
    n = read_answers(b"item,worker,label\n1,a,1\n1,b,2\n2,a,10\n", name="n.csv")
    assert list(n.classes) == [1, 2, 10]


def test_labels_respelled_as_numbers_are_reported():
    d = read_answers(b"item,worker,label\n1,a,+1\n1,b,-1\n2,a,1.50\n", name="s.csv")
    assert sorted(d.classes) == [-1.0, 1.0, 1.5]
    notes = " ".join(d.report[0].notes)
    assert "3 labels read as numbers" in notes and "'+1' -> '1.0'" in notes and "'1.50' -> '1.5'" in notes
    plain = read_answers(b"item,worker,label\n1,a,1\n1,b,-1\n", name="p.csv")
    assert not any("read as numbers" in n for n in plain.report[0].notes)


def test_case_fold():
    raw = b"item,worker,label\n1,a,Cat\n1,b,cat\n2,a,DOG\n2,b,dog\n"
    assert len(read_answers(raw, name="c.csv").classes) == 4
    d = read_answers(raw, name="c.csv", options=ReadOptions(label_case_fold=True))
    assert _classes(d) == ["cat", "dog"]


def test_label_map_names_codes_in_answers_and_gold():
    wide = b"0 -1 2\n1 1 -1\n2 2 0\n0 0 0\n"
    o = ReadOptions(label_map="0=highway,1=insidecity,2=street")
    d = read_answers(wide, name="answers.txt", options=o)
    assert _classes(d) == ["highway", "insidecity", "street"]  # the map's order
    g = read_gold(b"0\n1\n2\n0\n", name="LabelMe_Z_train.txt", options=o)
    assert list(g) == ["highway", "insidecity", "street", "highway"]
    with pytest.raises(CrowdDataError) as e:
        read_answers(wide, name="answers.txt", options=ReadOptions(label_map="0=highway,1=insidecity"))
    assert "'2'" in str(e.value) and e.value.option == "label_map" and "answers.txt" in str(e.value)


# ------------------------------------------------------------------ duplicates
DUP = b"item,worker,label\n1,a,x\n1,a,y\n1,b,y\n2,a,x\n2,b,y\n1,a,x\n"


@pytest.mark.parametrize("policy,n_answers,label_of_1a", [("all", 6, None), ("last", 4, "x"), ("first", 4, "x")])
def test_duplicates_policies(policy, n_answers, label_of_1a):
    d = read_answers(DUP, name="d.csv", options=ReadOptions(duplicates=policy))
    assert d.n_answers == n_answers
    f = d.to_frame()
    got = f[(f["task"] == 1) & (f["worker"] == "a")]["label"].tolist()
    if policy == "all":
        assert got == ["x", "y", "x"]
    else:
        assert got == [label_of_1a]
    last = read_answers(b"item,worker,label\n1,a,x\n1,a,y\n1,b,y\n2,a,x\n2,b,y\n", name="d.csv",
                        options=ReadOptions(duplicates="last"))
    first = read_answers(b"item,worker,label\n1,a,x\n1,a,y\n1,b,y\n2,a,x\n2,b,y\n", name="d.csv",
                         options=ReadOptions(duplicates="first"))
    fl, ff = last.to_frame(), first.to_frame()
    assert fl[(fl.task == 1) & (fl.worker == "a")].label.tolist() == ["y"]
    assert ff[(ff.task == 1) & (ff.worker == "a")].label.tolist() == ["x"]


# ------------------------------------------------------------------ preview
def test_preview_shows_rows_candidates_and_the_problem():
    raw = b"annotator,audio,genre,id\n1,a.mp3,rock,10\n2,a.mp3,pop,10\n1,b.mp3,pop,11\n"
    p = preview_table(raw, None, n=2, name="ls.csv")
    assert p.ambiguous and p.problem is not None and p.rows is not None and len(p.rows) == 2
    assert p.columns == ["annotator", "audio", "genre", "id"]
    assert p.candidates["worker"] == ["annotator"]
    assert "'Item column'" in p.message("dashboard") or "'Label column'" in p.message("dashboard")
    ok = preview_table(raw, ReadOptions(item="id", label="genre"), name="ls.csv")
    assert not ok.ambiguous and ok.problem is None and ok.roles == {"item": "id", "worker": "annotator",
                                                                     "label": "genre"}
    assert ok.data.n_items == 2
    bad = preview_table(b"\x89PNG\r\n\x1a\nxxxx", name="img.csv")
    assert bad.rows is None and "PNG" in bad.message("cli")
