"""Every malformed file of the fuzz corpus through every reader and the CLI: a clean outcome or a clear message.

Library: success or a ``CrowdDataError`` whose one-line message names the file.  CLI (in-process ``main``):
exit status 0 or 2, no traceback, no "internal error", and on 2 a message naming the file.  A few runs go
through a real subprocess.  Outputs written from hostile cells are checked for formula guarding.
"""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kdcrowd_core.cli import main
from kdcrowd_core.errors import CrowdDataError
from kdcrowd_core.io import read_answers, read_features, read_gold

from fuzz_corpus import corpus  # tests/io is on sys.path (rootdir-less test folders)

pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return corpus(tmp_path_factory.mktemp("fuzz"))


def test_corpus_has_at_least_40_kinds(cases):
    assert len({c.kind for c in cases}) >= 40


def _check_error(e: CrowdDataError, case) -> None:
    text = str(e)
    assert "\n" not in text, text
    assert case.path.name in text, f"{case.kind}: message does not name the file: {text}"
    assert "Fix:" in text or case.path.name in text


def test_every_reader_raises_only_clear_errors(cases):
    kwargs = {"max_bytes": 200_000, "max_rows": 100_000}
    for case in cases:
        for reader in (read_answers, read_gold, read_features):
            try:
                reader(case.path, **kwargs)
            except CrowdDataError as e:
                _check_error(e, case)
            except Exception as e:  # noqa: BLE001 - the point of the test
                pytest.fail(f"{case.kind}: {reader.__name__} raised {type(e).__name__}: {e}")


def _run(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _cli_commands(case, out_dir: Path) -> list[list[str]]:
    good = str(case.path.parent / "good.csv")
    f = str(case.path)
    if case.role == "features":
        return [["validate", good, "--features", f, *case.cli_extra]]
    if case.role == "gold":
        return [["validate", good, "--gold", f], ["aggregate", good, "--gold", f, "-o", str(out_dir / "l.csv")]]
    cmds = [["validate", f, *case.cli_extra]]
    if case.may_succeed or case.kind in _ALL_COMMANDS:  # the commands share the reader: a sample is enough
        cmds += [["aggregate", f, "-o", str(out_dir / "labels.csv"), *case.cli_extra],
                 ["workers", f, "-o", str(out_dir / "workers.csv"), *case.cli_extra]]
    return cmds


_ALL_COMMANDS = {"random binary", "decompression bomb", "header of blank names", "JSON list values",
                 "MTurk batch all rejected", "Parquet nested column", "Parquet with many rows in few bytes"}


def test_cli_exits_0_or_2_with_a_message_naming_the_file(cases, tmp_path, capsys):
    for case in cases:
        for argv in _cli_commands(case, tmp_path):
            rc, _out, err = _run(["-q", *argv], capsys)
            assert rc in (0, 2), f"{case.kind}: {argv[0]} exited {rc}: {err}"
            assert "Traceback" not in err and "internal error" not in err, f"{case.kind}: {err}"
            if rc == 2:
                assert case.path.name in err, f"{case.kind}: {argv[0]}: message does not name the file: {err}"
                assert err.count("\n") <= 1, f"{case.kind}: message spans lines: {err}"
            elif not case.may_succeed and case.role == "answers":
                pytest.fail(f"{case.kind}: {argv[0]} accepted a malformed file")


def test_train_refuses_bad_features_cleanly(cases, tmp_path, capsys):
    for case in [c for c in cases if c.role == "features"]:
        rc, _out, err = _run(["-q", "train", str(case.path.parent / "good.csv"), "--features", str(case.path),
                              "--epochs", "1", "--out", str(tmp_path / "run")], capsys)
        assert rc == 2 and case.path.name in err and "Traceback" not in err, f"{case.kind}: {err}"


def test_outputs_from_hostile_cells_are_guarded(cases, tmp_path, capsys):
    case = next(c for c in cases if c.kind == "formula injection in cells")
    for cmd, name in (("aggregate", "labels.csv"), ("workers", "workers.csv")):
        out = tmp_path / name
        rc, _o, err = _run(["-q", cmd, str(case.path), "-o", str(out)], capsys)
        assert rc == 0, err
        for row in csv.reader(io.StringIO(out.read_text())):
            for cell in row:
                assert cell[:1] not in ("=", "+", "@", "\t", "\r") and not (cell.startswith("-") and "+" in cell), \
                    f"{cmd}: unguarded cell {cell!r}"


@pytest.mark.parametrize("kind", ["random binary", "Parquet nested column"])
def test_subprocess_cli_has_no_traceback(cases, kind):
    case = next(c for c in cases if c.kind == kind)
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "kdcrowd_core", "validate", str(case.path)], capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and case.path.name in r.stderr
