"""Writers: round trips and numpy-safe JSON."""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from kdcrowd_core.data import ReadReport
from kdcrowd_core.errors import CrowdDataError
from kdcrowd_core.io import read_answers, write_answers, write_json, write_table
from kdcrowd_core.io.writers import to_jsonable


def test_write_answers_round_trip(tmp_path, toy_frame):
    d = read_answers(toy_frame)
    p = write_answers(d, tmp_path / "out" / "answers.csv")  # parent folder is created
    back = read_answers(p)
    assert back.report[0].columns == {"item": "task", "worker": "worker", "label": "label"}
    a = d.to_frame().sort_values(["task", "worker"]).reset_index(drop=True)
    b = back.to_frame().sort_values(["task", "worker"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a.astype(str), b.astype(str))
    assert pd.read_csv(p).columns.tolist() == ["task", "worker", "label"]
    assert not list((tmp_path / "out").glob(".*tmp"))  # no temporary files left behind


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".parquet"])
def test_write_table_by_extension(tmp_path, ext):
    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    df = pd.DataFrame({"item": ["a", "b"], "p": [0.25, 0.75], "n": [1, 2]})
    p = write_table(df, tmp_path / f"t{ext}")
    back = pd.read_parquet(p) if ext == ".parquet" else pd.read_csv(p, sep="\t" if ext == ".tsv" else ",")
    pd.testing.assert_frame_equal(back, df, check_dtype=False)


def test_write_table_to_file_object_and_mixed_parquet(tmp_path):
    buf = io.BytesIO()
    write_table(pd.DataFrame({"a": [1]}), buf, format="csv")
    assert buf.getvalue() == b"a\n1\n"
    pytest.importorskip("pyarrow")
    mixed = pd.DataFrame({"item": pd.Series([1, "x"], dtype=object), "v": [1.0, 2.0]})
    back = pd.read_parquet(write_table(mixed, tmp_path / "m.parquet"))
    assert back["item"].tolist() == ["1", "x"]


def test_write_table_errors(tmp_path):
    with pytest.raises(CrowdDataError, match="extension"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.xlsx")
    with pytest.raises(CrowdDataError, match="format="):
        write_table(pd.DataFrame({"a": [1]}), io.BytesIO())
    with pytest.raises(CrowdDataError, match="DataFrame"):
        write_table([1, 2], tmp_path / "t.csv")


def test_write_json_numpy_safe(tmp_path):
    obj = {"a": np.int64(3), "b": np.float32(0.5), "c": np.array([[1, 2]]), "nan": float("nan"),
           "inf": np.inf, np.int32(7): np.bool_(True), "s": pd.Series({"x": 1.5}), "i": pd.Index(["u"]),
           "df": pd.DataFrame({"q": [1]}), "rep": ReadReport(source="f.csv"), "t": (1, 2), "p": tmp_path}
    p = write_json(obj, tmp_path / "o.json")
    back = json.loads(p.read_text())
    assert back["a"] == 3 and back["b"] == 0.5 and back["c"] == [[1, 2]]
    assert back["nan"] is None and back["inf"] is None and back["7"] is True
    assert back["s"] == {"x": 1.5} and back["i"] == ["u"] and back["df"] == [{"q": 1}]
    assert back["rep"]["source"] == "f.csv" and back["t"] == [1, 2] and back["p"] == str(tmp_path)
    with pytest.raises(CrowdDataError, match="JSON"):
        to_jsonable(object())
