"""Run by torchrun from tests/scale/test_distributed_inference.py: every rank fits MV, DS and one-coin
(with and without gold clamping) on its share of the answers and saves what it got (and how many rows it read)."""
import sys
from pathlib import Path

import numpy as np
import torch.distributed as dist

from kdcrowd_core.inference import get_method
from kdcrowd_core.inference.sharded import Communicator, fit_sharded
from kdcrowd_core.io.chunked import read_answers_chunked
from kdcrowd_core.parallel import finish_distributed, init_distributed


def main(answers: str, gold: str, out: str, mode: str = "scan", duplicates: str = "all") -> None:
    """mode "scan": every rank scans the whole input; "share": each reads its share and routes answers."""
    init_distributed("cpu", timeout_s=60)
    rank, world = dist.get_rank(), dist.get_world_size()
    comm = Communicator()
    data = read_answers_chunked(answers, gold=gold, rank=rank, world=world, allgather=comm.allgather,
                                batch_rows=97, exchange=comm.exchange if mode == "share" else None,
                                options={"duplicates": duplicates})
    res = {"item_ids": np.asarray(data.item_ids.astype(str), dtype=str),
           "rows_read": np.array(data.report[0].rows_read), "n_answers": np.array(data.n_answers),
           "worker_ids": np.asarray(data.worker_ids.astype(str), dtype=str),
           "classes": np.asarray(data.classes.astype(str), dtype=str)}
    for name in ("majority_vote", "dawid_skene", "one_coin_dawid_skene"):
        for clamp in (False, True):
            kw = {"dtype": "float64"} if name == "dawid_skene" else {}
            r = fit_sharded(data, get_method(name, use_gold=clamp, **kw), comm)
            key = f"{name}_{int(clamp)}"
            res[key + "_proba"] = np.asarray(r.proba, dtype=np.float64)
            res[key + "_T"] = r.worker_matrices
            res[key + "_iter"] = np.array(r.n_iter)
    np.savez(Path(out) / f"rank{rank}.npz", **res)
    finish_distributed()


if __name__ == "__main__":
    main(*sys.argv[1:6])
