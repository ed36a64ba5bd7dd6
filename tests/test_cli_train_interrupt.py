"""Ctrl-C on `kdcrowd train` keeps the finished stages on disk and says so (issue 10, item 7)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from kdcrowd_core.cli import main

ROOT = Path(__file__).resolve().parents[1]
RUN_CLI = "import sys; from kdcrowd_core.cli import main; sys.exit(main())"


@pytest.mark.timeout(180)
@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_sigint_keeps_finished_stages(tmp_path):
    assert main(["-q", "simulate", "--items", "200", "--classes", "3", "--workers", "10", "--features", "8",
                 "-o", str(tmp_path / "crowd")]) == 0
    out, err = tmp_path / "run", tmp_path / "stderr.txt"
    proc = subprocess.Popen([sys.executable, "-c", RUN_CLI, "train", str(tmp_path / "crowd" / "answers.csv"),
                             "--features", str(tmp_path / "crowd" / "features.csv"), "--epochs", "100000",
                             "--device", "cpu", "--out", str(out)],
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL,
                            stderr=err.open("wb"))
    try:
        deadline = time.time() + 120
        while "teacher" not in err.read_text(errors="replace"):      # the teacher's progress bar: mv, ds done
            assert proc.poll() is None, err.read_text()
            assert time.time() < deadline, "no teacher progress in 120 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.read_text(errors="replace")
    assert rc == 130, text
    assert "Traceback" not in text
    assert "majority vote, Dawid-Skene" in text and "teacher stage" in text and "labels.csv" in text
    labels = pd.read_csv(out / "labels.csv")
    assert list(labels.columns[:3]) == ["item", "mv", "ds"] and len(labels) == 200
    meta = json.loads((out / "partial" / "partial.json").read_text())
    assert meta["finished_stages"] == ["mv", "ds"] and meta["interrupted_in"] == "teacher"
