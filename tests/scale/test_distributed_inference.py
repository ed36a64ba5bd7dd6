"""Data-parallel truth inference on torch.distributed (gloo, real processes started by torchrun)
gives the single-process results: MV, DS and one-coin, with gold, ties, a worker seen by one rank
only and a rank that holds no items, whether every rank scans the input or each reads only its share
(a CSV's byte range, a Parquet folder's row groups) and routes answers by item; a killed rank ends the
others with a clear message."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdcrowd_core.inference import get_method
from kdcrowd_core.io import load_crowd
from torchrun_helpers import child_env as _env
from torchrun_helpers import free_port as _free_port
from torchrun_helpers import torchrun as _torchrun

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.fixture(scope="module")
def crowd(tmp_path_factory) -> Path:
    """Integer item ids 0..299 with id % 3 != 2: under 3 ranks, rank 2 holds no items.
    Worker 'solo' answers only items with id % 6 == 0 (rank 0 under 2 and 3 ranks); many 2-answer ties."""
    rng = np.random.default_rng(3)
    d = tmp_path_factory.mktemp("crowd")
    items = [i for i in range(300) if i % 3 != 2]
    truth = {i: rng.integers(0, 4) for i in items}
    rows = []
    workers = [f"w{k}" for k in range(12)]
    acc = rng.uniform(0.4, 0.9, len(workers))
    for i in items:
        n = 2 if i % 5 == 0 else int(rng.integers(2, 6))
        for k in rng.choice(len(workers), n, replace=False):
            lab = truth[i] if rng.random() < acc[k] else int(rng.integers(0, 4))
            rows.append((i, workers[k], f"c{lab}"))
        if i % 6 == 0:
            rows.append((i, "solo", f"c{truth[i] if rng.random() < 0.7 else 3}"))
    order = rng.permutation(len(rows))  # answers not grouped by item
    pd.DataFrame([rows[k] for k in order], columns=["item", "worker", "label"]).to_csv(d / "answers.csv", index=False)
    gold_items = items[::7]
    pd.DataFrame({"item": gold_items, "label": [f"c{truth[i]}" for i in gold_items]}).to_csv(d / "gold.csv",
                                                                                           index=False)
    return d


def _launch(n: int, args: list[str], timeout: float = 180) -> list[subprocess.CompletedProcess]:
    """Start n ranks the way torchrun does (same environment variables), without the launcher process."""
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, *args], env=_env() | {
        "RANK": str(r), "WORLD_SIZE": str(n), "LOCAL_RANK": str(r), "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        for r in range(n)]
    out = []
    for p in procs:
        o, e = p.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, o, e))
    return out


@pytest.fixture(scope="module")
def crowd_folder(crowd) -> Path:
    """The same answers as a folder of 4 Parquet files of row groups of 50 rows, plus repeated (item, worker)
    answers with another label: 30 placed just after a third of the rows (the start of rank 1's share under
    3 ranks), repeating rows of rank 0's share; 30 just after half (rank 1's share under 2 ranks), repeating
    rows of the third before it.  A repeat is read in an earlier round than its original, so only the
    input order restored after routing keeps the right one (duplicates first/last)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    df = pd.read_csv(crowd / "answers.csv")
    n = len(df)
    total = n + 60

    def repeats(lo: int, hi: int) -> pd.DataFrame:
        return df.iloc[lo:hi:max((hi - lo) // 30, 1)].head(30).assign(
            label=lambda d: d["label"].map({"c0": "c1"}).fillna("c0"))

    a, b = total // 3 + 30, total // 2 + 40  # just past the 3-rank and 2-rank share boundaries
    df = pd.concat([df.iloc[:a], repeats(a // 4, a - 100), df.iloc[a:b], repeats(a + 10, b - 100), df.iloc[b:]],
                   ignore_index=True)
    folder = crowd / "answers_folder"
    folder.mkdir(exist_ok=True)
    for k, part in enumerate(np.array_split(np.arange(len(df)), 4)):
        pq.write_table(pa.Table.from_pandas(df.iloc[part], preserve_index=False), folder / f"part-{k}.parquet",
                       row_group_size=50)
    df.to_csv(crowd / "answers_dup.csv", index=False)
    return folder


# (world, input, how the ranks read, duplicates policy): "scan" = every rank scans the whole input and keeps
# its items; "share" = each rank reads only its share (row groups / byte range) and routes answers by item
CASES = [(2, "csv", "scan", "all"), (3, "csv", "scan", "all"), (3, "csv", "share", "all"),
         (2, "folder", "share", "last"), (3, "folder", "share", "first")]


@pytest.mark.parametrize("world,source,mode,dups", CASES)
def test_ranks_match_one_process(crowd, crowd_folder, tmp_path, world, source, mode, dups):
    answers = crowd / "answers.csv" if source == "csv" else crowd_folder
    runs = _launch(world, [str(HERE / "dist_worker.py"), str(answers), str(crowd / "gold.csv"),
                           str(tmp_path), mode, dups])
    for r in runs:
        assert r.returncode == 0, r.stderr[-3000:]
    parts = [np.load(tmp_path / f"rank{k}.npz") for k in range(world)]
    sizes = [len(p["item_ids"]) for p in parts]
    if world == 3:
        assert sizes[2] == 0 and min(sizes[:2]) > 0
    assert sum(sizes) == 200
    ref_source = answers if source == "csv" else crowd / "answers_dup.csv"
    data = load_crowd(ref_source, gold=crowd / "gold.csv", options={"duplicates": dups})
    assert sum(int(p["n_answers"]) for p in parts) == data.n_answers
    rows = [int(p["rows_read"]) for p in parts]
    n_rows = len(pd.read_csv(ref_source))
    if mode == "share":  # every row read by exactly one rank, and no rank read them all
        assert sum(rows) == n_rows and max(rows) < n_rows and min(rows) > 0, rows
    else:
        assert rows == [n_rows] * world
    ids = data.item_ids.astype(str)
    w_ids = pd.Index(parts[0]["worker_ids"])
    assert list(parts[0]["classes"]) == [str(c) for c in data.classes]
    for name in ("majority_vote", "dawid_skene", "one_coin_dawid_skene"):
        for clamp in (False, True):
            kw = {"dtype": "float64"} if name == "dawid_skene" else {}  # float32: see test_cli_distributed...
            m = get_method(name, use_gold=clamp, **kw).fit(data)
            key = f"{name}_{int(clamp)}"
            for p in parts:
                if not len(p["item_ids"]):
                    continue
                pos = ids.get_indexer(p["item_ids"])
                assert (pos >= 0).all()
                q1, qd = m.proba_array_[pos], p[key + "_proba"]
                assert np.array_equal(q1.argmax(1), qd.argmax(1)), key
                assert np.abs(q1 - qd).max() < 1e-5, key
                T = p[key + "_T"]
                wpos = data.worker_ids.astype(str).get_indexer(w_ids)
                assert np.abs(T - m.worker_matrices_[wpos]).max() < 1e-5, key
                if hasattr(m, "n_iter_"):
                    assert int(p[key + "_iter"]) == m.n_iter_, key


def test_cli_distributed_writes_one_table(crowd, tmp_path):
    out, mats = tmp_path / "labels.parquet", tmp_path / "m.json"
    r = _torchrun(2, ["-m", "kdcrowd_core", "aggregate", str(crowd / "answers.csv"), "--distributed",
                      "--method", "ds", "--gold", str(crowd / "gold.csv"), "-o", str(out), "--matrices", str(mats)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "on 2 processes" in r.stdout and "accuracy against gold" in r.stdout
    import re
    rows = {int(k): int(v) for k, v in re.findall(r"rank (\d)/2: read (\d+) rows", r.stderr)}
    n_rows = len(pd.read_csv(crowd / "answers.csv"))  # each rank read its byte range of the CSV only
    assert sorted(rows) == [0, 1] and sum(rows.values()) == n_rows and max(rows.values()) < n_rows, r.stderr
    got = pd.read_parquet(out).set_index("item")
    assert len(got) == 200 and not (tmp_path / "labels.parquet.parts").exists()
    m = get_method("ds", use_gold=False).fit(load_crowd(crowd / "answers.csv"))
    ref = m.probas_
    got = got.loc[ref.index]
    assert (got["label"].to_numpy() == m.labels_.to_numpy()).all()
    assert np.abs(got[[f"prob_{c}" for c in ref.columns]].to_numpy() - ref.to_numpy()).max() < 1e-5
    assert '"solo"' in mats.read_text()


def test_killed_rank_stops_the_others(crowd, tmp_path):
    """Rank 1 is killed after reading; rank 0, blocked in a collective, ends within the timeout with a clear line."""
    big = tmp_path / "big.csv"
    df = pd.read_csv(crowd / "answers.csv")
    pd.concat([df.assign(item=df["item"] + 1000 * k) for k in range(10)]).to_csv(big, index=False)
    port = _free_port()
    procs = []
    for rank in range(2):
        env = _env() | {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "kdcrowd_core", "aggregate", str(big), "--distributed", "--method", "ds",
             "--timeout", "30", "-o", str(tmp_path / f"o{rank}.parquet")],
            env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT))
    try:
        line = procs[1].stderr.readline()  # "rank 1/2: ... read in ..."
        assert "rank 1/2" in line, line
        procs[1].send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        _, err = procs[0].communicate(timeout=60)
        assert time.monotonic() - t0 < 45
        assert procs[0].returncode == 3, err[-2000:]
        assert "another rank stopped" in err and "Traceback" not in err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
