"""A corpus of malformed and hostile input files, one per kind of defect (grow it with every bug found).

``corpus(folder)`` writes every case into ``folder`` and returns the list of :class:`Case`.  Each case says which
role the file plays (answers, gold or features) and any extra CLI flags.  tests/io/test_fuzz.py runs every case
through every reader and the CLI and asserts a clean outcome: success, or a ``CrowdDataError`` / exit status 2
with a one-line message naming the file, never a traceback.
"""
from __future__ import annotations

import gzip
import io
import json
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

GOOD_ANSWERS = "item,worker,label\n" + "".join(f"i{i},w{w},{'ab'[(i * 7 + w * 3) % 5 < 2]}\n"
                                               for i in range(8) for w in range(3))


@dataclass
class Case:
    kind: str
    path: Path
    role: str = "answers"  # answers, gold or features
    cli_extra: list[str] = field(default_factory=list)
    may_succeed: bool = False  # a hostile but valid file: reading it is fine (and must stay safe)


def _parquet(table_dict: dict) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq
    b = io.BytesIO()
    pq.write_table(pa.table(table_dict), b)
    return b.getvalue()


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return b.getvalue()


def _answers(rows: list[str], head: str = "item,worker,label") -> bytes:
    return ("\n".join([head, *rows]) + "\n").encode()


def _mturk_rejected() -> bytes:
    head = "HITId,WorkerId,AssignmentStatus,Input.url,Answer.label"
    return _answers([f"h{i},W{w},Rejected,u{i},{'ab'[(i + w) % 2]}" for i in range(4) for w in range(3)], head)


def _mturk_two_questions() -> bytes:
    head = "WorkerId,HITId,Input.t,Answer.q1.a.on,Answer.q1.b.on,Answer.q2.c.on,Answer.q2.d.on"
    return _answers([f"W{w},h{i},t{i},true,false,false,true" for i in range(3) for w in range(3)], head)


def _toloka_conflicting_gold() -> bytes:
    rows = [f"img1\ta\t{'cat' if w else 'dog'}\tw{w}" for w in range(3)] + [f"img2\tb\t\tw{w}" for w in range(3)]
    return ("\n".join(["INPUT:image\tOUTPUT:result\tGOLDEN:result\tASSIGNMENT:worker_id", *rows]) + "\n").encode()


def _label_studio(cancelled: bool = False, bad_annotations: bool = False) -> bytes:
    tasks = []
    for t in range(4):
        anns = [{"completed_by": w, "was_cancelled": cancelled,
                 "result": [{"type": "choices", "from_name": "c", "value": {"choices": ["x" if (t + w) % 2 else "y"]}}]}
                for w in range(3)]
        tasks.append({"id": t, "data": {"text": f"t{t}"}, "annotations": "oops" if bad_annotations else anns})
    return json.dumps(tasks).encode()


def _xlsx_like() -> bytes:
    return _zip({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<workbook/>"})


# kind -> (file name, content builder, role, extra CLI flags, may succeed)
_BUILDERS: list[tuple[str, str, Callable[[], bytes], str, list[str], bool]] = [
    ("empty file", "empty.csv", lambda: b"", "answers", [], False),
    ("blank lines only", "blank.csv", lambda: b"\n\n  \n\r\n", "answers", [], False),
    ("header only", "header.csv", lambda: b"item,worker,label\n", "answers", [], False),
    ("random binary", "random.csv", lambda: bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)),
     "answers", [], False),
    ("PNG image named .csv", "image.csv", lambda: b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "answers", [], False),
    ("PDF", "doc.pdf", lambda: b"%PDF-1.4\n%...\n", "answers", [], False),
    ("Excel workbook", "book.xlsx", _xlsx_like, "answers", [], False),
    ("zip named .csv", "zipped.csv", lambda: _zip({"a.csv": GOOD_ANSWERS.encode()}), "answers", [], False),
    ("zip with two tables", "two.zip", lambda: _zip({"a.csv": b"x", "b.csv": b"y"}), "answers", [], False),
    ("empty zip", "nothing.zip", lambda: _zip({}), "answers", [], False),
    ("damaged zip", "broken.zip", lambda: _zip({"a.csv": GOOD_ANSWERS.encode()})[:40], "answers", [], False),
    ("truncated gzip", "cut.csv.gz", lambda: gzip.compress(GOOD_ANSWERS.encode())[:25], "answers", [], False),
    ("gzip of binary", "bin.csv.gz",
     lambda: gzip.compress(bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8))), "answers", [],
     False),
    ("decompression bomb", "bomb.csv.gz", lambda: gzip.compress(b"item,worker,label\n" + b"1,a,x\n" * 400_000),
     "answers", ["--max-bytes", "200000"], False),
    ("pickle", "data.pkl", lambda: pickle.dumps({"a": 1}), "answers", [], False),
    ("ragged rows", "ragged.csv", lambda: b"item,worker,label\n1,a,x\n1,b,y,extra,fields\n2,a,x\n", "answers", [],
     False),
    ("unclosed quote", "quote.csv", lambda: b'item,worker,label\n1,a,"x\n2,b,y\n', "answers", [], False),
    ("header of blank names", "blanknames.csv", lambda: b",,\n1,a,x\n2,b,y\n3,c,x\n", "answers", [], False),
    ("header of spaces", "spacenames.csv", lambda: b" , , \ni1,a,x\ni2,b,y\n", "answers", [], False),
    ("repeated header names", "twice.csv", lambda: b"item,item,label\n1,a,x\n2,b,y\n", "answers", [], False),
    ("one column", "onecol.csv", lambda: b"label\nx\ny\nx\n", "answers", [], False),
    ("one class", "oneclass.csv", lambda: _answers([f"{i},w{w},cat" for i in range(3) for w in range(2)]),
     "answers", [], False),
    ("all labels empty", "nolabels.csv", lambda: _answers([f"{i},w{w}," for i in range(3) for w in range(2)]),
     "answers", [], False),
    ("all items empty", "noitems.csv", lambda: _answers([f",w{w},x" for w in range(4)]), "answers", [], False),
    ("UTF-16 with BOM", "utf16.csv", lambda: GOOD_ANSWERS.encode("utf-16"), "answers", [], True),
    ("Latin-1 bytes", "latin1.csv", lambda: GOOD_ANSWERS.replace("w1", "w\xe91").encode("latin-1"), "answers", [],
     True),
    ("NUL bytes inside", "nul.csv", lambda: b"item,worker,label\n1,a\x00,x\n2,b,y\n", "answers", [], False),
    ("CR line endings", "cr.csv", lambda: GOOD_ANSWERS.replace("\n", "\r").encode(), "answers", [], True),
    ("mixed delimiters", "mixed.csv", lambda: b"item;worker,label\n1;a,x\n2,b;y\n3;c;x\n", "answers", [], False),
    ("one huge cell", "huge.csv", lambda: b"item,worker,label\n1,a," + b"x" * 2_000_000 + b"\n2,b,y\n", "answers", [],
     True),
    ("1500 columns, one class", "wide1500.csv",  # was quadratic in the columns (95 s for 5000)
     lambda: (",".join(f"c{k}" for k in range(1500)) + "\n" + ",".join("1" for _ in range(1500)) + "\n").encode(),
     "answers", [], False),
    ("malformed JSON", "bad.json", lambda: b'[{"item": 1, "worker": "a", "label": "x"},', "answers", [], False),
    ("JSON nested objects", "nested.json",
     lambda: json.dumps([{"item": {"id": i}, "worker": {"name": f"w{w}"}, "label": {"v": "ab"[(i + w) % 2]}}
                         for i in range(4) for w in range(3)]).encode(), "answers", [], True),
    ("JSON list values", "lists.json",
     lambda: json.dumps([{"item": i, "worker": f"w{w}", "label": ["x"]} for i in range(3) for w in range(2)]).encode(),
     "answers", [], False),
    ("JSON scalar", "scalar.json", lambda: b"42", "answers", [], False),
    ("JSON empty list", "emptylist.json", lambda: b"[]", "answers", [], False),
    ("JSONL with a bad line", "lines.jsonl", lambda: b'{"item": 1, "worker": "a", "label": "x"}\n{oops\n',
     "answers", [], False),
    ("Label Studio annotations not a list", "ls_bad.json", lambda: _label_studio(bad_annotations=True), "answers",
     [], False),
    ("Label Studio all cancelled", "ls_cancel.json", lambda: _label_studio(cancelled=True), "answers", [], False),
    ("MTurk batch all rejected", "mturk_rejected.csv", _mturk_rejected, "answers", [], False),
    ("MTurk two radio questions", "mturk_two.csv", _mturk_two_questions, "answers", [], False),
    ("Toloka conflicting GOLDEN", "toloka_gold.tsv", _toloka_conflicting_gold, "answers", [], False),
    ("Parquet nested column", "nested.parquet",
     lambda: _parquet({"item": [1, 2, 3], "worker": ["a", "b", "c"], "label": [[1], [2], [1]]}), "answers", [],
     False),
    ("Parquet truncated", "cut.parquet",
     lambda: (lambda d: d[:len(d) // 2] + d[-8:])(_parquet({"item": list(range(50)), "worker": ["a"] * 50,
                                                             "label": ["x", "y"] * 25})), "answers", [], False),
    ("Parquet with many rows in few bytes", "many.parquet",
     lambda: _parquet({"item": np.zeros(300_000, dtype=np.int32), "worker": np.zeros(300_000, dtype=np.int32),
                       "label": np.zeros(300_000, dtype=np.int8)}), "answers", ["--max-rows", "100000"], False),
    ("formula injection in cells", "formulas.csv",
     lambda: _answers([f"\"=cmd|' /C calc'!A{i}\",@w{w},{'+SUM(1+1)' if (i + w) % 2 else '-2+3'}"
                       for i in range(4) for w in range(3)]), "answers", [], True),
    ("markdown and HTML in names", "markup.csv",
     lambda: _answers([f"<b>{i}</b>,![p](http://127.0.0.1:9/x.png),{'ab'[(i + w) % 2]}" for i in range(3)
                       for w in range(2)], head="item,![p](http://127.0.0.1:9/x.png),<script>label</script>"),
     "answers", [], True),
    ("control characters in ids", "control.csv",
     lambda: _answers([f"i\x07{i},w\x1b{w},{'ab'[(i + w) % 2]}" for i in range(4) for w in range(3)]), "answers",
     [], True),
    ("headerless three numeric columns", "three.csv", lambda: b"1,2,3\n4,5,6\n7,8,9\n", "answers", [], False),
    ("too many labels for wide", "manylabels.csv",
     lambda: ("item,a,b,c\n" + "".join(f"{i},v{i}a,v{i}b,v{i}c\n" for i in range(60))).encode(), "answers", [],
     False),
    ("features: 1-D .npy", "f1d.npy", lambda: _npy(np.arange(8.0)), "features", [], False),
    ("features: object .npy", "fobj.npy", lambda: _npy(np.array([{"a": 1}] * 8, dtype=object)), "features", [],
     False),
    ("features: .npy rows without ids", "frows.npy", lambda: _npy(np.ones((8, 3))), "features", [], False),
    ("features: NaN", "fnan.csv", lambda: ("item,f\n" + "".join(f"i{i},{'nan' if i == 3 else i}\n"
                                                                 for i in range(8))).encode(), "features", [], False),
    ("features: text values", "ftext.csv", lambda: ("item,f\n" + "".join(f"i{i},v{i}\n" for i in range(8))).encode(),
     "features", [], False),
    ("features: repeated ids", "frep.csv", lambda: ("item,f\n" + "".join(f"i{i % 4},{i}\n"
                                                                        for i in range(8))).encode(), "features",
     [], False),
    ("features: ids that do not match", "fids.csv",
     lambda: ("item,f\n" + "".join(f"http://x/i{i}.jpg,{i}\n" for i in range(8))).encode(), "features", [], False),
    ("gold: conflicting labels", "gconf.csv", lambda: b"item,truth\ni1,a\ni1,b\n", "gold", [], False),
    ("gold: unknown items", "gunknown.csv", lambda: b"item,truth\nzz1,a\nzz2,b\n", "gold", [], False),
    ("gold: 2-D .npy", "g2d.npy", lambda: _npy(np.ones((4, 3))), "gold", [], False),
]


def _npy(arr: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.save(b, arr, allow_pickle=arr.dtype == object)
    return b.getvalue()


def corpus(folder: Path) -> list[Case]:
    """Write every case into ``folder``; also a good answers file ``good.csv`` used with gold/features cases."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "good.csv").write_text(GOOD_ANSWERS)
    cases = []
    for kind, name, build, role, extra, ok in _BUILDERS:
        p = folder / name
        p.write_bytes(build())
        cases.append(Case(kind=kind, path=p, role=role, cli_extra=list(extra), may_succeed=ok))
    cases.append(Case(kind="a folder, not a file", path=folder, role="answers"))
    cases.append(Case(kind="a path that does not exist", path=folder / "missing.csv", role="answers"))
    return cases
