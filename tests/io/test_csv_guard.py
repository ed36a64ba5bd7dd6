"""CSV formula guard (OWASP CSV injection): every CSV writer neutralises formulas, numbers stay numbers."""
from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
import pytest

from kdcrowd_core.cli import main
from kdcrowd_core.io import write_table
from kdcrowd_core.io.csv_guard import csv_bytes, guard_frame, is_dangerous, write_csv

HOSTILE = ["=cmd|' /C calc'!A0", "+SUM(1+1)", "-2+3", "@SUM(A1)", "\t=1+1", "\r=1+1", "=HYPERLINK(\"http://x\")"]
SAFE = ["-2", "+3.5", "-1e5", "cat", "a=b", "", "12", ".5"]


@pytest.mark.parametrize("value", HOSTILE)
def test_formula_cells_are_neutralised(value):
    assert is_dangerous(value)
    df = pd.DataFrame({"item": [value], "n": [1]})
    g = guard_frame(df)
    assert g.loc[0, "item"] == "'" + value
    rows = list(csv.reader(io.StringIO(csv_bytes(df).decode())))
    assert rows[1][0] == "'" + value
    assert rows[1][0][0] not in "=+-@\t\r"


@pytest.mark.parametrize("value", SAFE)
def test_numbers_and_plain_text_are_kept(value):
    assert not is_dangerous(value)
    df = pd.DataFrame({"x": [value]})
    assert guard_frame(df).loc[0, "x"] == value


def test_numeric_columns_stay_numbers_and_the_input_is_not_changed():
    df = pd.DataFrame({"confidence": [-0.5, 0.25], "count": [-3, 4], "label": ["=1+1", "ok"]})
    g = guard_frame(df)
    assert g["confidence"].dtype == np.float64 and g["count"].dtype == np.int64
    assert list(g["confidence"]) == [-0.5, 0.25]
    assert df.loc[0, "label"] == "=1+1"  # a copy was guarded
    text = csv_bytes(df).decode()
    assert "-0.5" in text and "-3" in text and "'=1+1" in text


def test_column_names_and_index_are_guarded():
    df = pd.DataFrame({"=evil()": [1]}, index=pd.Index(["@bad"], name="worker"))
    text = csv_bytes(df, index=True).decode()
    assert "'=evil()" in text and "'@bad" in text
    assert "\n=" not in text and not text.startswith("=")


def test_writers_guard_by_default_and_can_be_turned_off(tmp_path):
    df = pd.DataFrame({"item": ["=cmd|' /C calc'!A0", "b"], "label": ["+SUM(1+1)", "-2"]})
    p = write_table(df, tmp_path / "out.csv")
    text = p.read_text()
    assert "'=cmd" in text and "'+SUM" in text and ",-2" in text
    p2 = write_csv(df, tmp_path / "raw.csv", guard=False)
    assert p2.read_text().splitlines()[1].startswith("=cmd")
    t = write_table(df, tmp_path / "out.tsv").read_text()
    assert "'=cmd" in t


def test_cli_aggregate_and_workers_guard_csv_and_no_csv_guard_turns_it_off(tmp_path):
    ans = tmp_path / "a.csv"
    rows = ["item,worker,label"]
    for i, item in enumerate(["=cmd|' /C calc'!A0", "+SUM(1+1)", "-2+3", "@x", "plain", "other"]):
        for w in ["=w1", "w2", "w3"]:
            rows.append(f"\"{item}\",{w},{'ab'[(i + len(w)) % 2] if w != 'w3' else 'ab'[i % 2]}")
    ans.write_text("\n".join(rows) + "\n")
    out = tmp_path / "labels.csv"
    assert main(["-q", "aggregate", str(ans), "--method", "mv", "-o", str(out)]) == 0
    cells = [r[0] for r in csv.reader(io.StringIO(out.read_text()))][1:]
    assert all(c[:1] not in "=+-@" for c in cells), cells
    assert "'=cmd|' /C calc'!A0" in cells
    wout = tmp_path / "workers.csv"
    assert main(["-q", "workers", str(ans), "--method", "mv", "-o", str(wout)]) == 0
    assert "'=w1" in wout.read_text()
    raw = tmp_path / "raw.csv"
    assert main(["-q", "aggregate", str(ans), "--method", "mv", "-o", str(raw), "--no-csv-guard"]) == 0
    assert "\n=cmd" in raw.read_text() or raw.read_text().count('"=cmd') == 1


def test_every_csv_writing_command_has_no_csv_guard():
    from kdcrowd_core.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for cmd in ("aggregate", "workers", "train", "items", "relabel", "predict"):
        flags = {o for a in sub.choices[cmd]._actions for o in a.option_strings}
        assert "--no-csv-guard" in flags, cmd
