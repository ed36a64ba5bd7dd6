"""``kdcrowd train --distributed``: the same command on every process started by ``torchrun``.

:func:`run_distributed` joins the process group (gloo on CPU, NCCL on a CUDA GPU picked by
``LOCAL_RANK``), gives the command a :class:`~kdcrowd_core.kd.distributed.DataParallel` as
``args.data_parallel``, keeps the ranks other than 0 quiet (rank 0 shows progress and writes the run
directory) and turns a lost peer into one line and exit status 3 (docs/scaling.md).
"""
from __future__ import annotations

import os
import sys
import time

EXIT_PEER_LOST = 3


def add_distributed_options(p) -> None:
    g = p.add_argument_group("data-parallel training (docs/scaling.md)")
    g.add_argument("--distributed", action="store_true",
                   help="data-parallel over the processes started by torchrun: each trains on its share of "
                        "every epoch's items, gradients averaged (gloo on CPU, NCCL on GPU); rank 0 writes --out")
    g.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="with --distributed: seconds a rank waits for the others before giving up (default 600)")


def run_distributed(args, command) -> int:
    from .kd.distributed import DataParallel
    from .parallel import finish_distributed, init_distributed, is_peer_failure, peer_lost_message
    dev = init_distributed(args.device, args.timeout)
    import torch.distributed as dist
    args.device = str(dev)
    args.data_parallel = dp = DataParallel(dev)
    rank, world = dp.rank, dp.world
    loud = not args.quiet
    if rank != 0:
        args.quiet = True
    t0 = time.perf_counter()
    try:
        code = command(args)
    except Exception as e:  # noqa: BLE001 - a lost peer becomes one clear line
        if not is_peer_failure(e):
            raise
        print(f"kdcrowd train: error: {peer_lost_message(e, 'training')}", file=sys.stderr, flush=True)
        os._exit(EXIT_PEER_LOST)  # the group cannot be torn down cleanly without the lost rank
    if code != 0:  # interrupted (130): the others may be inside a collective this rank will not join
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if loud:
        print(f"rank {rank}/{world}: trained on {dp.items_trained} of {dp.items_total} item-epochs (its share), "
              f"{dp.steps} optimizer steps with gradients averaged over {world} processes "
              f"({dp.bytes_reduced / 1e6:.1f} MB all-reduced in {dp.comm_s:.1f} s) in {time.perf_counter() - t0:.1f} s; "
              f"weights {dp.weights_digest}", file=sys.stderr, flush=True)
    dist.barrier()
    finish_distributed()
    return code
