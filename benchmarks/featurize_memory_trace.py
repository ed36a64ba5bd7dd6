"""Resident memory and glibc heap statistics, batch by batch, while ``embed_images`` streams a zip.

A diagnostic for the 1 GB aim of issue 8 (the aim itself is checked by ``featurize_speed.py
--memory-only``): it shows whether memory grows with the number of images, and whether growth is
live data (``in use``) or free space trapped in the heap (``heap free``: fragmentation).

    python benchmarks/featurize_memory_trace.py --images 10000 --network stub   # about 3 min on 2 cores
    python benchmarks/featurize_memory_trace.py --images 2000                   # the real network

``--network stub`` replaces the network's forward pass by a cheap torch computation with the same
output shape (n, 1280), so the allocation pattern of decoding, batching and collecting the output
is kept and 10,000 images take minutes instead of an hour on a busy machine.  Nothing is written to
docs/: it prints one line every ``--every`` images.
"""
from __future__ import annotations

import argparse
import ctypes
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def heap_stats():
    """glibc's mallinfo2 (all arenas), or None off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
        return libc.mallinfo2
    except (OSError, AttributeError):
        return None


def status_mib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) // 1024
    return -1


def stub_encoder():
    import torch

    def encode(batch, *, device="auto"):
        x = torch.from_numpy(batch)
        f = torch.nn.functional.avg_pool2d(x, 32).repeat(1, 427, 1, 1)[:, :1280]   # (n, 1280, 7, 7)
        return f.mean(dim=(2, 3)).float().cpu().numpy()
    return encode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000, help="generated 640x480 JPEGs (ignored with --zip)")
    ap.add_argument("--zip", type=Path, help="an existing zip of images instead of generated ones")
    ap.add_argument("--network", choices=["real", "stub"], default="real")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--every", type=int, default=640, help="print a line every this many images")
    args = ap.parse_args()
    import kdcrowd_core.featurize.images as images_mod
    from kdcrowd_core.featurize import embed_images, load_image_model
    if args.network == "stub":
        images_mod.encode_images = stub_encoder()
    else:
        load_image_model("cpu")
    mallinfo = heap_stats()

    def line(done: int, total: int) -> None:
        if done % args.every and done != total:
            return
        s = f"{done:6d} images  resident {status_mib('VmRSS:'):5d} MiB  peak {status_mib('VmHWM:'):5d} MiB"
        if mallinfo is not None:
            m = mallinfo()
            s += (f"  | heap {m.arena >> 20:5d} MiB: in use {m.uordblks >> 20:5d}, free {m.fordblks >> 20:5d}; "
                  f"mmapped {m.hblkhd >> 20:5d} MiB")
        print(s, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        z = args.zip
        if z is None:
            from featurize_speed import write_zip
            z = write_zip(Path(tmp) / "imgs.zip", args.images)
        print(f"network {args.network}, batch {args.batch_size}, resident before {status_mib('VmRSS:')} MiB")
        t0 = time.perf_counter()
        emb = embed_images(z, device="cpu", batch_size=args.batch_size, cache_dir=None, progress=line)
        print(f"{len(emb)} images in {time.perf_counter() - t0:.0f} s; peak resident {status_mib('VmHWM:')} MiB, "
              f"resident after {status_mib('VmRSS:')} MiB")


if __name__ == "__main__":
    main()
