"""``kdcrowd aggregate`` on answers too big for memory (``--chunked``) or on many processes (``--distributed``).

Both paths read the answers in chunks into compact arrays (:mod:`kdcrowd_core.io.chunked`) and fit with
:mod:`kdcrowd_core.inference.sharded`.  Under ``torchrun --nproc-per-node N`` with ``--distributed``,
each rank keeps the answers of its own items, worker statistics are all-reduced, rank 0 writes the
worker matrices, and each rank writes its items (merged by rank 0 into OUT when OUT is a .parquet/.csv
file; a folder of ``part-NNNNN`` files otherwise).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time
from pathlib import Path

from .errors import CrowdDataError

#: files at least this big go through the chunked reader by themselves
AUTO_CHUNKED_BYTES = 512 << 20
EXIT_PEER_LOST = 3
_TABLE_EXTS = {".parquet", ".pq", ".csv", ".tsv", ".tab", ".txt"}


def add_scale_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("large data (docs/scaling.md)")
    g.add_argument("--chunked", action="store_true",
                   help="read the answers in chunks into compact arrays (automatic for a Parquet folder or a "
                        f"file over {AUTO_CHUNKED_BYTES >> 20} MB)")
    g.add_argument("--distributed", action="store_true",
                   help="data-parallel over the processes started by torchrun (gloo on CPU, NCCL on GPU)")
    g.add_argument("--batch-rows", type=int, default=None, metavar="N", help="rows per chunk (default 2097152)")
    g.add_argument("--matrices", metavar="MATRICES.json", help="also write every worker's K x K matrix")
    g.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="with --distributed: seconds a rank waits for the others before giving up (default 600)")
    g.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for the EM (default: torch's)")


def wants_streaming(args) -> bool:
    if getattr(args, "chunked", False) or getattr(args, "distributed", False):
        return True
    if getattr(args, "format", "auto") not in ("auto", "long"):
        return False
    p = Path(args.answers)
    try:
        from .io.chunked import can_stream
        return can_stream(p) and (p.is_dir() or p.stat().st_size >= AUTO_CHUNKED_BYTES)
    except OSError:
        return False


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, GB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: KiB -> ~GB


def aggregate_streaming(args) -> int:
    if not args.distributed:
        return _run(args, rank=0, world=1, device=args.device)
    from .parallel import finish_distributed, init_distributed, is_peer_failure, peer_lost_message
    dev = init_distributed(args.device, args.timeout)
    import torch.distributed as dist
    rank, world = dist.get_rank(), dist.get_world_size()
    state = {"phase": "start-up"}
    try:
        code = _run(args, rank=rank, world=world, device=str(dev), state=state)
    except CrowdDataError:
        raise
    except Exception as e:  # noqa: BLE001 - a lost peer becomes one clear line
        if not is_peer_failure(e):
            raise
        print(f"kdcrowd aggregate: error: {peer_lost_message(e, state['phase'])}", file=sys.stderr, flush=True)
        os._exit(EXIT_PEER_LOST)  # the group cannot be torn down cleanly without the lost rank
    finish_distributed()
    return code


def _run(args, *, rank: int, world: int, device: str, state: dict | None = None) -> int:
    from .inference import get_method
    from .inference.sharded import Communicator, fit_sharded
    from .io.chunked import DEFAULT_BATCH_ROWS, read_answers_chunked, write_posteriors
    state = state if state is not None else {}
    comm = Communicator()
    quiet = args.quiet
    t0 = time.perf_counter()
    state["phase"] = "reading"
    from .cli import read_options
    data = read_answers_chunked(args.answers, options=read_options(args), gold=args.gold, batch_rows=args.batch_rows or DEFAULT_BATCH_ROWS,
                                rank=rank, world=world, allgather=comm.allgather, exchange=comm.exchange)
    t_read = time.perf_counter() - t0
    if world > 1 and not quiet:
        rows = data.report[0].rows_read if data.report else 0
        print(f"rank {rank}/{world}: read {rows} rows (its share of the input), sent "
              f"{comm.bytes_exchanged / 1e6:.1f} MB to the ranks owning their items; kept {data.n_answers} "
              f"answers of {data.n_items} items in {t_read:.1f} s", file=sys.stderr, flush=True)
    n_answers = data.n_answers
    method = get_method(args.method)
    if hasattr(method, "use_gold"):
        method.use_gold = bool(args.clamp_gold)
    if hasattr(method, "device"):
        method.device = device
    if args.threads is not None and hasattr(method, "num_threads"):
        method.num_threads = args.threads
    state["phase"] = f"{method.name} iterations"
    t1 = time.perf_counter()
    bar = None
    if rank == 0 and not quiet and hasattr(method, "n_iter"):
        from tqdm.auto import tqdm
        bar = tqdm(total=method.n_iter, desc=method.name, unit="it", leave=False, file=sys.stderr)
    try:
        res = fit_sharded(data, method, comm, callback=(lambda it, ll: bar.update(1)) if bar else None,
                          consume=True)
    except CrowdDataError:
        if world > 1:
            raise
        # a method without a sharded form: fit it on the in-memory arrays
        fitted = method.fit(data.to_crowd_data())
        from .inference.sharded import ShardResult
        res = ShardResult(proba=fitted.proba_array_, worker_matrices=fitted.worker_matrices_,
                          prior=getattr(fitted, "prior_", None), method=method.name)
    finally:
        if bar is not None:
            bar.close()
    t_fit = time.perf_counter() - t1
    state["phase"] = "writing"
    t2 = time.perf_counter()
    out = Path(args.output)
    is_file = out.suffix.lower() in _TABLE_EXTS
    from .cli import csv_guard_on
    guard = csv_guard_on(args)
    if world == 1:
        write_posteriors(out, data.item_ids, data.classes, res.proba, guard=guard)
    else:
        part_dir = out.with_name(out.name + ".parts") if is_file else out
        ext = out.suffix.lower() if is_file else ".parquet"
        write_posteriors(part_dir / f"part-{rank:05d}{ext}", data.item_ids, data.classes, res.proba, guard=guard)
    if rank == 0 and args.matrices:
        from .cli import matrices_json
        from .io.writers import write_json
        write_json(matrices_json(data, res.worker_matrices, res.method), args.matrices)
    gm = data.gold_mask
    gold_hits = int((res.proba[gm].argmax(axis=1) == data.gold[gm]).sum()) if gm.any() else 0
    stats = comm.allgather((data.n_items, int(gm.sum()), gold_hits, peak_rss_gb(), n_answers))
    state["phase"] = "merging the per-rank files"
    if world > 1 and is_file:
        if rank == 0:
            from .io.chunked import merge_parts
            merge_parts([part_dir / f"part-{r:05d}{ext}" for r in range(world)], out)
            shutil.rmtree(part_dir, ignore_errors=True)
        comm.allgather(True)  # everyone waits for the merged file
    t_write = time.perf_counter() - t2
    if rank == 0:
        n_items = sum(s[0] for s in stats)
        n_gold, hits = sum(s[1] for s in stats), sum(s[2] for s in stats)
        peak = max(s[3] for s in stats)
        procs = f" on {world} processes" if world > 1 else ""
        comm_txt = (f"; all-reduced {res.bytes_reduced / 1e6:.2f} MB per rank in {res.allreduce_calls} calls"
                    if world > 1 else "")
        if not quiet:
            print(f"{res.method}: {n_items} items, {data.n_workers} workers, {data.total_answers} answers{procs} "
                  f"in {time.perf_counter() - t0:.2f} s (read {t_read:.2f} s, fit {t_fit:.2f} s"
                  f"{f', {res.n_iter} iterations' if res.n_iter else ''}, write {t_write:.2f} s); "
                  f"peak memory {peak:.2f} GB{' per rank' if world > 1 else ''}{comm_txt} -> {out}")
            if args.matrices:
                print(f"worker matrices -> {args.matrices}")
        if n_gold:
            if args.clamp_gold:
                print(f"gold labels of {n_gold} items were clamped (used as known truths); "
                      "run without --clamp-gold to measure accuracy against them")
            else:
                print(f"accuracy against gold on {n_gold} items: {hits / n_gold:.4f}")
    return 0
