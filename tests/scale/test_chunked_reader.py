"""The chunked reader and the out-of-core aggregate give what the in-memory reader and estimators give."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdcrowd_core.cli import main
from kdcrowd_core.errors import CrowdDataError
from kdcrowd_core.inference import get_method
from kdcrowd_core.inference.sharded import fit_sharded
from kdcrowd_core.io import load_crowd, read_answers
from kdcrowd_core.io.chunked import partition_of, read_answers_chunked
from kdcrowd_core.io.options import ReadOptions


@pytest.fixture
def answers(tmp_path) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 3000
    df = pd.DataFrame({"task": [f" t{i} " for i in rng.integers(0, 700, n)],
                       "annotator": [f"w{k}" for k in rng.integers(0, 25, n)],
                       "answer": rng.choice(["cat", "dog", "bird", "10"], n).astype(object)})
    df.loc[5, "answer"] = None  # skipped, counted
    df.loc[7, "annotator"] = None
    return df


def _same(a, b) -> None:
    assert a.n_answers == b.n_answers and a.n_items == b.n_items and a.n_workers == b.n_workers
    assert list(a.classes) == list(b.classes)
    fa = pd.DataFrame({"i": a.item_ids[a.item], "w": a.worker_ids[a.worker], "l": a.classes[a.label]})
    fb = pd.DataFrame({"i": b.item_ids[b.item], "w": b.worker_ids[b.worker], "l": b.classes[b.label]})
    pd.testing.assert_frame_equal(fa.sort_values(["i", "w"]).reset_index(drop=True),
                                  fb.sort_values(["i", "w"]).reset_index(drop=True))


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "tsv", "parquet", "folder"])
def test_chunked_equals_in_memory(answers, tmp_path, fmt):
    if fmt == "folder":
        path = tmp_path / "parts"
        path.mkdir()
        for k, lo in enumerate(range(0, len(answers), 1000)):
            chunk = answers.iloc[lo:lo + 1000]
            chunk.to_parquet(path / f"p{k}.parquet", index=False)
        ref = read_answers(_csv(answers, tmp_path))
    elif fmt == "parquet":
        path = tmp_path / "a.parquet"
        answers.to_parquet(path, index=False)
        ref = read_answers(path)
    else:
        path = tmp_path / f"a.{fmt}"
        answers.to_csv(path, index=False, sep="\t" if fmt == "tsv" else ",")
        ref = read_answers(path) if fmt != "csv.gz" else read_answers(_csv(answers, tmp_path))
    got = read_answers_chunked(path, batch_rows=256)
    assert got.item.dtype == np.int32 and got.worker.dtype == np.int32 and got.label.dtype == np.int16
    assert np.all(np.diff(got.item) >= 0)
    _same(got, ref)
    rep = got.report[0]
    assert rep.duplicates == ref.report[0].duplicates == 0  # duplicates="all" (the default): every answer counts
    assert any("repeated (item, worker) answers all count" in n for n in rep.notes)
    assert rep.n_skipped == 2 and rep.rows_read == len(answers)


@pytest.mark.parametrize("policy", ["last", "first"])
def test_duplicates_policy(answers, tmp_path, policy):
    p = _csv(answers, tmp_path)
    ref = read_answers(p, options=ReadOptions(duplicates=policy))
    got = read_answers_chunked(p, options=ReadOptions(duplicates=policy), batch_rows=500)
    _same(got, ref)
    assert got.report[0].duplicates == ref.report[0].duplicates > 0


def _csv(df, tmp_path):
    p = tmp_path / "ref.csv"
    df.to_csv(p, index=False)
    return p


def test_shards_partition_items(answers, tmp_path):
    p = _csv(answers, tmp_path)
    ref = read_answers(p)
    # a fake 3-rank allgather is not possible in one process, so check the partition rule itself
    raw = np.asarray(ref.item_ids, dtype=object)
    owner = partition_of(np.array([f"  {v}" for v in raw], dtype=object), 3)
    assert np.array_equal(owner, partition_of(raw, 3))  # stripped like the reader strips
    assert set(owner) == {0, 1, 2}
    assert np.array_equal(partition_of(np.array(["7", "8"], dtype=object), 4), partition_of(np.array([7, 8]), 4))
    assert np.array_equal(partition_of(np.array([7.0, 8.0]), 4), [3, 0])


def test_sharded_fit_equals_estimators(answers, tmp_path):
    p = _csv(answers, tmp_path)
    gold = pd.DataFrame({"item": ["t1", "t2", "t3"], "label": ["cat", "dog", "bird"]})
    gold.to_csv(tmp_path / "g.csv", index=False)
    got = read_answers_chunked(p, batch_rows=300, gold=tmp_path / "g.csv")
    ref = load_crowd(p, gold=tmp_path / "g.csv")
    pos = ref.item_ids.get_indexer(got.item_ids)
    for name in ("majority_vote", "dawid_skene", "one_coin_dawid_skene"):
        kw = {"dtype": "float64"} if name == "dawid_skene" else {}  # float32 sums in another order differ ~1e-4
        m = get_method(name, use_gold=True, **kw).fit(ref)
        r = fit_sharded(got, get_method(name, use_gold=True, **kw))
        assert np.abs(r.proba - m.proba_array_[pos]).max() < 1e-6
        assert np.abs(r.worker_matrices - m.worker_matrices_[ref.worker_ids.get_indexer(got.worker_ids)]).max() < 1e-6


def test_cli_chunked_aggregate(answers, tmp_path, capsys):
    p = _csv(answers, tmp_path)
    assert main(["aggregate", str(p), "--chunked", "-o", str(tmp_path / "o.parquet"),
                 "--matrices", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "peak memory" in out
    got = pd.read_parquet(tmp_path / "o.parquet").set_index("item")
    assert main(["aggregate", str(p), "-o", str(tmp_path / "r.csv")]) == 0
    ref = pd.read_csv(tmp_path / "r.csv").set_index("item").loc[got.index]
    assert (ref["label"].astype(str) == got["label"].astype(str)).all()
    # default float32 DS, sums in another order (worker codes differ): equal to float32 rounding grown by EM
    assert np.abs(ref["confidence"].to_numpy() - got["confidence"].to_numpy()).max() < 1e-3


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    p = tmp_path / "a.csv"
    p.write_text("item,worker,label\n1,a,x\n2,b,x\n")
    with pytest.raises(CrowdDataError, match="same label"):
        read_answers_chunked(p)
    p.write_text("foo,bar\n1,2\n")
    assert main(["aggregate", str(p), "--chunked", "-o", str(tmp_path / "o.csv")]) == 2
    assert "no item column" in capsys.readouterr().err
    assert main(["aggregate", str(tmp_path / "none.csv"), "--chunked", "-o", str(tmp_path / "o.csv")]) == 2


@pytest.mark.parametrize("world", [2, 3, 5])
def test_shares_split_the_rows_exactly(answers, tmp_path, world):
    """Every row of a CSV (byte ranges at line starts) and of a Parquet folder (row groups) is read by
    exactly one rank, in input order, and no rank reads them all."""
    import pyarrow.parquet as pq

    from kdcrowd_core.io.chunked import iter_batches
    csv = tmp_path / "a.csv"
    answers.to_csv(csv, index=False)
    folder = tmp_path / "folder"
    folder.mkdir()
    for k, part in enumerate(np.array_split(np.arange(len(answers)), 3)):
        answers.iloc[part].to_parquet(folder / f"p{k}.parquet", index=False, row_group_size=200)
    assert pq.ParquetFile(folder / "p0.parquet").num_row_groups == 5
    cols = ["task", "annotator", "answer"]
    for src in (csv, folder):
        shares = [[b.to_pandas() for b in iter_batches(src, cols, batch_rows=311, share=(r, world))]
                  for r in range(world)]
        sizes = [sum(len(b) for b in s) for s in shares]
        assert sum(sizes) == len(answers) and max(sizes) < len(answers) and min(sizes) > 0, (src, sizes)
        got = pd.concat([b for s in shares for b in s], ignore_index=True)
        want = answers if src == folder else pd.read_csv(csv, dtype=str, keep_default_na=False, na_values=[""])
        assert got["task"].tolist() == want["task"].tolist()


def test_share_parse_error_names_the_file_line(tmp_path):
    lines = ["item,worker,label"] + [f"i{k},w{k % 7},c{k % 3}" for k in range(400)]
    lines[300] = "i299,w1,c1,extra"  # file line 301, in the second half
    p = tmp_path / "bad.csv"
    p.write_text("\n".join(lines) + "\n")
    from kdcrowd_core.io.chunked import iter_batches
    first = list(iter_batches(p, ["item", "worker", "label"], share=(0, 2)))  # the first half is fine
    assert 150 < sum(b.num_rows for b in first) < 250
    with pytest.raises(CrowdDataError) as e:
        list(iter_batches(p, ["item", "worker", "label"], share=(1, 2)))
    msg = str(e.value)  # the share's first line in the whole file, and pyarrow's quote of the bad line
    start = 2 + sum(b.num_rows for b in first)
    assert f"after line {start - 1}" in msg and "i299,w1,c1,extra" in msg and "bad.csv" in msg, msg


def test_compressed_csv_share_is_read_by_rank_0(answers, tmp_path):
    """A .gz CSV cannot be cut into byte ranges: rank 0 reads all of it, the other ranks nothing."""
    from kdcrowd_core.io.chunked import iter_batches
    gz = tmp_path / "a.csv.gz"
    answers.to_csv(gz, index=False, compression="gzip")
    cols = ["task", "annotator", "answer"]
    rows = [sum(b.num_rows for b in iter_batches(gz, cols, share=(r, 2))) for r in range(2)]
    assert rows == [len(answers), 0]
