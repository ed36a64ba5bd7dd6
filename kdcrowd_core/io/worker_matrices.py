"""The worker-matrices file of a training run (``kdcrowd train --out DIR``): JSON, or ``.npz`` with many classes.

Up to :data:`JSON_MAX_CELLS` numbers in all, ``DIR/worker_matrices.json`` holds every matrix as nested lists
(``{"before": {"method", "layout", "classes", "workers": {id: [[...]]}}, "teacher": ..., "after": ...}``),
as it always has.  Past that — 1,000 classes and 20 workers make 60 million numbers, 1.1 GB of JSON and
several GB of Python lists to write it — the matrices go to ``DIR/worker_matrices.npz`` (plain arrays,
loadable with ``allow_pickle=False``: ``classes``, ``workers``, one float32 ``(R, K, K)`` array per stage)
and ``worker_matrices.json`` holds a summary that points to it: ``{"format": "npz", "file", "layout",
"classes", "workers", "stages": {stage: {"method", "diagonal": {id: [P(correct | class) ...]}}}}``.

:func:`read_worker_matrices` reads both, old runs included.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import CrowdDataError
from .writers import write_json

JSON_NAME, NPZ_NAME = "worker_matrices.json", "worker_matrices.npz"
LAYOUT = "matrix[i][j] = P(worker answers classes[j] | true class is classes[i])"
#: Largest number of matrix entries (all stages) written as nested JSON lists.
JSON_MAX_CELLS = 2_000_000


def write_worker_matrices(directory: str | Path, classes, worker_ids, stages: dict[str, tuple[str, object]],
                          *, max_json_cells: int = JSON_MAX_CELLS) -> list[Path]:
    """Write the stages' matrices (``stage -> (method name, (R, K, K) array)``) into ``directory``.

    Returns the files written: ``worker_matrices.json`` alone, or with ``worker_matrices.npz``.
    """
    from ..inference.matrices import worker_chunks
    d = Path(directory)
    classes = [str(c) for c in classes]
    workers = [str(w) for w in worker_ids]
    R, K = len(workers), len(classes)
    if len(stages) * R * K * K <= max_json_cells:
        doc = {name: {"method": method, "layout": LAYOUT, "classes": classes,
                      "workers": {w: np.round(np.asarray(T[r], dtype=np.float64), 6).tolist()
                                  for r, w in enumerate(workers)}}
               for name, (method, T) in stages.items()}
        write_json(doc, d / JSON_NAME)
        return [d / JSON_NAME]
    arrays: dict[str, np.ndarray] = {"classes": np.array(classes, dtype=str), "workers": np.array(workers, dtype=str)}
    summary = {}
    for name, (method, T) in stages.items():
        out = np.empty((R, K, K), dtype=np.float32)
        for lo, chunk in worker_chunks(T):          # a few workers at a time (T may be compact)
            out[lo:lo + len(chunk)] = chunk
        arrays[name] = out
        arrays[f"{name}_method"] = np.array(method, dtype=str)
        diag = np.diagonal(out, axis1=1, axis2=2)
        summary[name] = {"method": method,
                         "diagonal": {w: np.round(diag[r].astype(np.float64), 6).tolist() for r, w in enumerate(workers)}}
    np.savez(d / NPZ_NAME, **arrays)
    write_json({"format": "npz", "file": NPZ_NAME, "layout": LAYOUT, "classes": classes, "workers": workers,
                "stages": summary}, d / JSON_NAME)
    return [d / JSON_NAME, d / NPZ_NAME]


def read_worker_matrices(path: str | Path) -> dict[str, dict]:
    """A run's worker matrices, either format: ``stage -> {"method", "classes", "workers", "matrices"}``.

    ``path`` is the run folder or its ``worker_matrices.json``; ``matrices`` is an ``(R, K, K)`` array in the
    order of ``workers``.  Pickle-free (``numpy.load(..., allow_pickle=False)``).
    """
    p = Path(path)
    if p.is_dir():
        p = p / JSON_NAME
    if not p.is_file():
        raise CrowdDataError(f"{p}: no worker matrices file.", hint="give a folder written by `kdcrowd train --out`.")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CrowdDataError(f"{p}: not a worker matrices file ({exc}).",
                             hint="give the worker_matrices.json that `kdcrowd train` wrote.") from exc
    if doc.get("format") == "npz":
        npz = p.parent / Path(str(doc.get("file", NPZ_NAME))).name     # always next to the JSON file
        if not npz.is_file():
            raise CrowdDataError(f"{p}: its matrices file {npz.name} is missing next to it.",
                                 hint="keep worker_matrices.npz in the same folder as worker_matrices.json.")
        with np.load(npz, allow_pickle=False) as z:
            classes, workers = [str(c) for c in z["classes"]], [str(w) for w in z["workers"]]
            return {name: {"method": str(info.get("method", name)), "classes": classes, "workers": workers,
                           "matrices": np.asarray(z[name])} for name, info in doc.get("stages", {}).items()}
    out = {}
    for name, block in doc.items():
        workers = list(block["workers"])
        out[name] = {"method": block.get("method", name), "classes": list(block["classes"]), "workers": workers,
                     "matrices": np.asarray([block["workers"][w] for w in workers], dtype=np.float64)}
    return out
