"""``kdcrowd embed``: raw texts or images -> a features table for ``kdcrowd train --features``."""
from __future__ import annotations

import argparse
import sys
import threading
import time


def add_embed_parser(sub) -> None:
    e = sub.add_parser(
        "embed", help="turn raw item texts or images into a features table (MiniLM / EfficientNet-Lite0)",
        description="Writes FEATURES (CSV or Parquet by extension): an 'item' column, then 384 (texts, all-MiniLM-L6-v2) "
                    "or 1280 (images, EfficientNet-Lite0) numeric columns, ready for `kdcrowd train --features FEATURES`. "
                    "Vectors are cached by content hash, so a rerun on the same items is fast.")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", metavar="ITEMS", help="items table (CSV/TSV/Parquet/JSONL) with an item column and a "
                     "text column; an answers file with a text column works too")
    src.add_argument("--images", metavar="DIR_OR_ZIP", help="a folder or a .zip of image files")
    src.add_argument("--image-paths", metavar="TABLE", help="a table with an item column and a column of image "
                     "paths (relative to the table's folder)")
    e.add_argument("--item", help="item-id column of the --text/--image-paths table (default: detected by name)")
    e.add_argument("--text-column", help="text column of the --text table (default: detected by name)")
    e.add_argument("--path-column", help="image path column of the --image-paths table (default: detected)")
    e.add_argument("--image-ids", choices=["stem", "name", "path"], default="stem",
                   help="item id of an image file: stem = file name without extension (default), name = file "
                        "name, path = path relative to the folder/zip")
    e.add_argument("--keep-first", action="store_true",
                   help="an item id repeated with different texts keeps its first row (default: error)")
    e.add_argument("--answers", metavar="ANSWERS", help="only embed items of this answers file (its columns are "
                   "detected; others are skipped and counted; answered items without content are reported)")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default auto)")
    e.add_argument("--batch-size", type=int, default=None, help="items per batch (default 64 texts; images 16 on CPU, 64 on GPU)")
    e.add_argument("--cache-dir", help="embedding cache folder (default: DATA/cache/features, DATA being "
                   "$KDCROWD_HOME, ./.kdcrowd or ~/.kdcrowd)")
    e.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    e.add_argument("-o", "--output", required=True, metavar="FEATURES", help="output table (.csv, .tsv or .parquet)")
    from .cli import add_csv_guard_flag
    add_csv_guard_flag(e)
    e.set_defaults(func=cmd_embed)


FLAGS = {"item": "--item", "keep_first": "--keep-first", "ids": "--image-ids"}


def cmd_embed(args) -> int:
    from .cli import _load, csv_guard_on
    from .errors import CrowdDataError
    from .featurize import embed_images, embed_texts
    from .io.writers import write_table

    if args.batch_size is not None and args.batch_size < 1:
        raise CrowdDataError("--batch-size must be at least 1.")
    _check_output(args.output)
    if args.images and (args.item or args.path_column or args.text_column):
        raise CrowdDataError("--item, --text-column and --path-column name columns of a table; --images takes a "
                             "folder or zip, whose item ids come from the file names (see --image-ids).")
    known = None
    if args.answers:  # its columns are detected (--item names the items table's column here)
        known = [str(i) for i in _load(args.answers, argparse.Namespace()).item_ids]
    cache_dir = None if args.no_cache else (args.cache_dir or "default")
    bar = _Bar("texts" if args.text else "images", quiet=args.quiet)
    cancel = threading.Event()
    common = dict(known_items=known, device=args.device, cache_dir=cache_dir, progress=bar, cancel=cancel)
    t0 = time.perf_counter()
    try:
        if args.text:
            emb = embed_texts(args.text, item=args.item, text=args.text_column,
                              on_duplicate="first" if args.keep_first else "error", batch_size=args.batch_size or 64,
                              flags={**FLAGS, "column": "--text-column"}, **common)
        else:
            if args.text_column:
                raise CrowdDataError("--text-column is for --text; with --image-paths use --path-column.")
            src = args.images or args.image_paths
            emb = embed_images(src, ids=args.image_ids, item=args.item, from_table=bool(args.image_paths),
                               path_column=args.path_column,
                               batch_size=args.batch_size, flags={**FLAGS, "column": "--path-column"},
                               **common)
    finally:
        bar.close()
    secs = time.perf_counter() - t0
    write_table(emb.to_frame(), args.output, guard=csv_guard_on(args))
    rep = emb.report
    if not args.quiet:
        print(rep.to_text())
    print(f"{len(emb)} items x {emb.X.shape[1]} features in {secs:.1f} s -> {args.output}"
          + (f" ({rep.n_skipped} inputs skipped, see above)" if rep.n_skipped and not args.quiet else
             f" ({rep.n_skipped} inputs skipped)" if rep.n_skipped else ""))
    return 0


def _check_output(path: str) -> None:
    from pathlib import Path

    from .errors import CrowdDataError
    suf = "".join(Path(path).suffixes[-1:]).lower()
    if suf not in (".csv", ".tsv", ".tab", ".txt", ".parquet", ".pq"):
        raise CrowdDataError(f"-o {path}: unknown table format {suf or '(no extension)'!r}.",
                             hint="end the output name with .csv, .tsv or .parquet.")
    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        raise CrowdDataError(f"-o {path}: the folder {parent} does not exist.", hint="create it first.")


class _Bar:
    """tqdm progress bar fed by the featurizers' ``progress(done, total)`` callback."""

    def __init__(self, unit: str, quiet: bool):
        self._unit, self._quiet, self._tqdm = unit, quiet, None

    def __call__(self, done: int, total: int) -> None:
        if self._tqdm is None:  # created on the first report: nothing is drawn before the input is read
            from tqdm.auto import tqdm
            self._tqdm = tqdm(total=total, desc="embedding", unit=f" {self._unit}", disable=self._quiet,
                              file=sys.stderr, leave=False, dynamic_ncols=True)
        if self._tqdm.total != total:
            self._tqdm.total = total
        self._tqdm.n = done
        self._tqdm.refresh()

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
