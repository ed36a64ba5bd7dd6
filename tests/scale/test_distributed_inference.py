"""Data-parallel truth inference on torch.distributed (gloo, real processes started by torchrun)
gives the single-process results: MV, DS and one-coin, with gold, ties, a worker seen by one rank
only and a rank that holds no items; a killed rank ends the others with a clear message."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdcrowd_core.inference import get_method
from kdcrowd_core.io import load_crowd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _torchrun(n: int, args: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n), "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), *args]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout, cwd=ROOT)


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


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_match_one_process(crowd, tmp_path, world):
    runs = _launch(world, [str(HERE / "dist_worker.py"), str(crowd / "answers.csv"), str(crowd / "gold.csv"),
                           str(tmp_path)])
    for r in runs:
        assert r.returncode == 0, r.stderr[-3000:]
    parts = [np.load(tmp_path / f"rank{k}.npz") for k in range(world)]
    sizes = [len(p["item_ids"]) for p in parts]
    if world == 3:
        assert sizes[2] == 0 and min(sizes[:2]) > 0
    assert sum(sizes) == 200
    data = load_crowd(crowd / "answers.csv", gold=crowd / "gold.csv")
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
