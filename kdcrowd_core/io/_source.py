"""Turn whatever the caller passed (a path, bytes, an uploaded file) into checked bytes.

Everything that can be decided before parsing is decided here: the file
exists, is not too big, is not empty, is not an image or an archive, its
extension is one we read, and (for text) which encoding it uses.  Each
failure is a :class:`~kdcrowd_core.errors.CrowdDataError` naming the file.
"""
from __future__ import annotations

import io
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CrowdDataError, opt

#: Files larger than this are refused (1 GiB), also once decompressed (.gz, .zip, Parquet's uncompressed
#: size).  Every reader takes ``max_bytes=``.
DEFAULT_MAX_BYTES = 1 << 30
#: Tables with more rows than this are refused before they are parsed (a small compressed file can hold
#: millions of rows).  Every reader takes ``max_rows=``; bigger crowds: ``kdcrowd aggregate --chunked``.
DEFAULT_MAX_ROWS = 10_000_000

TEXT_EXTS = {".csv", ".tsv", ".txt", ".tab", ".dat", ".data"}
PARQUET_EXTS = {".parquet", ".pq"}
JSON_EXTS = {".json", ".jsonl", ".ndjson"}
NPY_EXTS = {".npy"}
_KIND_OF_EXT = {**{e: "text" for e in TEXT_EXTS}, **{e: "parquet" for e in PARQUET_EXTS},
                **{e: "json" for e in JSON_EXTS}, **{e: "npy" for e in NPY_EXTS}}

#: Extensions we recognise but do not read, with what to do instead.
_KNOWN_UNSUPPORTED = {
    ".xlsx": "an Excel workbook: save the sheet as CSV (File > Save As > CSV UTF-8) and read that",
    ".xlsm": "an Excel workbook: save the sheet as CSV and read that",
    ".xls": "an Excel workbook: save the sheet as CSV and read that",
    ".ods": "a spreadsheet: save the sheet as CSV and read that",
    ".bz2": "a compressed file: decompress it first",
    ".xz": "a compressed file: decompress it first",
    ".7z": "an archive: extract it first",
    ".tar": "an archive: extract it first",
    ".npz": "a NumPy archive: save each array with numpy.save as .npy",
    ".pkl": "a pickle: pickles are never loaded (unsafe); save as CSV, Parquet or .npy",
    ".pickle": "a pickle: pickles are never loaded (unsafe); save as CSV, Parquet or .npy",
    ".pt": "a torch file: save the array with numpy.save as .npy",
    ".h5": "an HDF5 file: export the table as CSV or Parquet",
    ".hdf5": "an HDF5 file: export the table as CSV or Parquet",
    ".png": "an image, not a data table",
    ".jpg": "an image, not a data table",
    ".jpeg": "an image, not a data table",
    ".gif": "an image, not a data table",
    ".pdf": "a PDF document, not a data table",
    ".docx": "a Word document, not a data table",
}

#: Magic numbers of binary files that are not data tables.
_MAGIC = [
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a zip archive (or an .xlsx/.docx/.ods file, which are zip archives)"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"BZh9", "a bzip2-compressed file"),
    (b"\xfd7zXZ\x00", "an xz-compressed file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-zip archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office file (.xls/.doc)"),
    (b"\x89HDF", "an HDF5 file"),
    (b"\x80\x04\x95", "a Python pickle"),
    (b"\x80\x05\x95", "a Python pickle"),
]
_PARQUET_MAGIC = b"PAR1"
_NPY_MAGIC = b"\x93NUMPY"

_C1 = re.compile(rb"[\x80-\x9f]")  # bytes that differ between cp1252 and Latin-1
_CONTROL = bytes([*range(0, 9), 11, 14, *range(15, 32), 127])  # control bytes other than \t \n \f \r
_SNIFF_BYTES = 1 << 16  # 64 KiB is plenty to sniff delimiters, headers and binary content


@dataclass
class Source:
    """Bytes of one input plus what we learned about them before parsing.

    ``text`` is UTF-8 without a byte-order mark for ``kind`` "text"/"json"
    (re-encoded when the file was Latin-1/cp1252/UTF-16); ``encoding`` is
    the encoding the file was in.
    """

    name: str
    data: bytes
    ext: str
    kind: str
    encoding: str | None = None
    text: bytes | None = None

    @property
    def path(self) -> str | None:
        """The name to put in error messages (``None`` for anonymous memory buffers)."""
        return None if self.name.startswith("<") else self.name

    def head(self, n: int = _SNIFF_BYTES) -> str:
        """The first ``n`` bytes of the text, decoded, cut at the last complete line."""
        chunk = (self.text or b"")[:n]
        s = chunk.decode("utf-8", errors="replace")
        if len(self.text or b"") > n:
            cut = max(s.rfind("\n"), s.rfind("\r"))
            if cut > 0:
                s = s[:cut]
        return s

    def error(self, message: str, **kw: Any) -> CrowdDataError:
        return CrowdDataError(message, path=self.path, **kw)


def _fmt_bytes(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def describe_source(source: Any, name: str | None = None) -> str:
    """The name a reader would show for ``source`` (for messages outside the readers)."""
    if name:
        return str(name)
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    nm = getattr(source, "name", None)
    return str(nm) if isinstance(nm, str) and nm else "<memory>"


def _read_bytes(source: Any, name: str | None, max_bytes: int) -> tuple[str, bytes]:
    if max_bytes is None or max_bytes <= 0:
        raise CrowdDataError(f"max_bytes must be a positive number of bytes, got {max_bytes!r}.")
    if isinstance(source, str) and ("\n" in source or "\r" in source):
        raise CrowdDataError("got a string with line breaks where a file path was expected.",
                             hint="pass the file's path, or its content as bytes (text.encode()) with name=.")
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        label = str(name or p)
        if not p.exists():
            raise CrowdDataError("file not found.", path=label,
                                 hint=f"check the path (the current directory is {os.getcwd()}).")
        if p.is_dir():
            raise CrowdDataError("this is a folder, not a file.", path=label, hint="give the path of a file inside it.")
        size = p.stat().st_size
        if size > max_bytes:
            raise CrowdDataError(
                f"the file is {_fmt_bytes(size)}, over the size limit of {_fmt_bytes(max_bytes)}.", path=label,
                hint=_limit_hint(), option="max_bytes")
        try:
            return label, p.read_bytes()
        except OSError as e:
            raise CrowdDataError(f"cannot read the file: {e.strerror or e}.", path=label,
                                 hint="check that the file is readable.") from None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = str(name or "<memory>")
    elif hasattr(source, "read"):
        label = describe_source(source, name)
        try:
            data = source.read(max_bytes + 1)
        except TypeError:  # file-likes whose read() takes no size
            data = source.read()
        except OSError as e:
            raise CrowdDataError(f"cannot read the file: {e}.", path=label) from None
        if isinstance(data, str):
            data = data.encode("utf-8")
        data = bytes(data)
    else:
        raise CrowdDataError(
            f"cannot read a {type(source).__name__}: expected a path, bytes or a binary file object.",
            hint="pass the file's path, or open it with open(path, 'rb').")
    if len(data) > max_bytes:
        raise CrowdDataError(
            f"the file is larger than the size limit of {_fmt_bytes(max_bytes)}.",
            path=None if label.startswith("<") else label,
            hint=_limit_hint(), option="max_bytes")
    return label, data


def _is_binary(sample: bytes) -> bool:
    """NUL bytes or more than 1 % control characters: not text."""
    if not sample:
        return False
    if b"\x00" in sample:
        return True
    ctrl = len(sample) - len(sample.translate(None, _CONTROL))
    return ctrl > 0.01 * len(sample)


def _decode(src: Source) -> None:
    """Fill ``src.text`` (UTF-8, no BOM) and ``src.encoding``."""
    data = src.data
    if data.startswith(b"\xef\xbb\xbf"):
        body, enc = data[3:], "utf-8-sig"
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            src.text = data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            raise src.error("the file starts with a UTF-16 byte-order mark but is not valid UTF-16.",
                            hint="save it again as UTF-8 text.") from None
        src.encoding = "utf-16"
        return
    else:
        body, enc = data, "utf-8"
    if _is_binary(body[:_SNIFF_BYTES]):
        raise src.error("the file has binary content, not text.",
                        hint="give a CSV/TSV text file (or Parquet/JSON); export spreadsheets as CSV.")
    try:
        body.decode("utf-8")
        src.text, src.encoding = body, enc
        return
    except UnicodeDecodeError:
        pass
    # Not UTF-8: Windows-1252 (Excel's "CSV" on Windows) where it decodes, else Latin-1 (decodes anything).
    if _C1.search(body):
        try:
            src.text, src.encoding = body.decode("cp1252").encode("utf-8"), "cp1252"
            return
        except UnicodeDecodeError:
            pass
    src.text, src.encoding = body.decode("latin-1").encode("utf-8"), "latin-1"


def open_source(source: Any, *, name: str | None, max_bytes: int, kinds: tuple[str, ...], what: str,
                max_rows: int | None = None) -> Source:
    """Read and check ``source``; ``kinds`` are the content kinds this reader accepts.

    ``what`` ("answers", "gold", "features") appears in messages.  A ``.gz`` file or a
    ``.zip`` holding one file is decompressed first (at most ``max_bytes``).  ``max_rows``
    (default :data:`DEFAULT_MAX_ROWS`) bounds the rows of text and Parquet tables.
    """
    label, data = _read_bytes(source, name, max_bytes)
    inner = label
    if data.startswith(_GZIP_MAGIC) or (_ext_of(label) == ".zip" and data.startswith(b"PK")):
        label, inner, data = decompress(label, data, max_bytes)
    ext = _ext_of(inner)
    src = Source(name=label, data=data, ext=ext, kind="text")
    supported = sorted(e for e, k in _KIND_OF_EXT.items() if k in kinds)
    if ext in _KNOWN_UNSUPPORTED:
        raise src.error(f"unsupported file type {ext!r}: this is {_KNOWN_UNSUPPORTED[ext]}.",
                        hint=f"{what} may be read from {', '.join(supported)} files.")
    if not data:
        raise src.error("the file is empty (0 bytes).",
                        hint=f"give a file of {what} with a header line and at least one row.")
    if data.startswith(_PARQUET_MAGIC):
        kind = "parquet"
    elif data.startswith(_NPY_MAGIC):
        kind = "npy"
    else:
        for magic, desc in _MAGIC:
            if data.startswith(magic):
                raise src.error(f"this is {desc}, not a table of {what}.",
                                hint=f"{what} may be read from {', '.join(supported)} files.")
        if ext in _KIND_OF_EXT:
            kind = _KIND_OF_EXT[ext]
            if kind in ("parquet", "npy"):
                raise src.error(f"the file is named {ext} but does not start like a "
                                f"{'Parquet' if kind == 'parquet' else 'NumPy .npy'} file.",
                                hint=f"check that the file was saved correctly and is complete; {what} may be read "
                                     f"from {', '.join(supported)} files.")
        elif ext and not _looks_like_suffixless(label):
            raise src.error(f"unsupported file extension {ext!r}.",
                            hint=f"{what} may be read from {', '.join(supported)} files.")
        else:
            stripped = data.lstrip()[:1]
            kind = "json" if stripped in (b"[", b"{") and "json" in kinds else "text"
    if kind not in kinds:
        names = {"text": "a text table (CSV/TSV)", "parquet": "a Parquet file", "json": "a JSON file",
                 "npy": "a NumPy .npy array"}
        raise src.error(f"{names[kind]} cannot hold {what}.",
                        hint=f"{what} may be read from {', '.join(supported)} files.")
    src.kind = kind
    if kind in ("text", "json"):
        _decode(src)
        if not src.text.strip():
            raise src.error("the file is empty (only blank lines).",
                            hint=f"give a file of {what} with a header line and at least one row.")
    check_rows(src, DEFAULT_MAX_ROWS if max_rows is None else max_rows, max_bytes)
    return src


_GZIP_MAGIC = b"\x1f\x8b"


def _ext_of(label: str) -> str:
    return "".join(Path(label).suffixes[-1:]).lower() if not label.startswith("<") else ""


def _limit_hint() -> str:
    return (f"raise {opt('max_bytes')} if the file is meant to be this big, or split it "
            "(kdcrowd aggregate --chunked reads big answer files in parts).")


def decompress(label: str, data: bytes, max_bytes: int) -> tuple[str, str, bytes]:
    """(name for messages, inner file name, bytes) of a gzip file or a zip holding one file; never over max_bytes."""
    import gzip
    import zipfile
    if data.startswith(_GZIP_MAGIC):
        inner = label[:-3] if label.lower().endswith(".gz") else label
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                out = gz.read(max_bytes + 1)
        except (OSError, EOFError, zlib.error) as e:
            raise CrowdDataError(f"the gzip file is damaged or incomplete ({str(e).splitlines()[0][:120]}).",
                                 path=label, hint="download or compress it again (gzip FILE).") from None
        if len(out) > max_bytes:
            raise CrowdDataError(f"decompressed, the file is over the size limit of {_fmt_bytes(max_bytes)}.",
                                 path=label, hint=_limit_hint(), option="max_bytes")
        return label, inner, out
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CrowdDataError(f"the zip archive is damaged or incomplete ({str(e)[:120]}).", path=label,
                             hint="create the zip again, or give the table itself.") from None
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")
                   and not Path(m.filename).name.startswith(".")]
        if not members:
            raise CrowdDataError("the zip archive holds no file.", path=label,
                                 hint="give a zip that holds one table (CSV, TSV, JSON or Parquet), or the table itself.")
        if len(members) > 1:
            names = ", ".join(m.filename for m in members[:6]) + (", ..." if len(members) > 6 else "")
            raise CrowdDataError(f"the zip archive holds {len(members)} files ({names}); it must hold one table.",
                                 path=label, hint="unzip it and give the one file to read.")
        m = members[0]
        where = f"{label} ({m.filename})"
        if m.file_size > max_bytes:
            raise CrowdDataError(f"unzipped, {m.filename} is {_fmt_bytes(m.file_size)}, over the size limit of "
                                 f"{_fmt_bytes(max_bytes)}.", path=label, hint=_limit_hint(), option="max_bytes")
        try:
            with zf.open(m) as f:
                out = f.read(max_bytes + 1)
        except RuntimeError as e:  # encrypted
            raise CrowdDataError(f"cannot read {m.filename} in the zip archive ({str(e)[:120]}).", path=label,
                                 hint="give a zip without a password, or the table itself.") from None
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as e:
            raise CrowdDataError(f"{m.filename} in the zip archive is damaged or uses an unsupported "
                                 f"compression ({str(e)[:120]}).", path=label,
                                 hint="create the zip again (standard deflate), or give the table itself.") from None
        if len(out) > max_bytes:
            raise CrowdDataError(f"unzipped, {m.filename} is over the size limit of {_fmt_bytes(max_bytes)}.",
                                 path=label, hint=_limit_hint(), option="max_bytes")
        return where, m.filename, out


def check_rows(src: Source, max_rows: int, max_bytes: int) -> None:
    """Refuse tables with more than ``max_rows`` rows (or Parquet over ``max_bytes`` uncompressed) before parsing."""
    if max_rows is None or max_rows <= 0:
        raise CrowdDataError(f"max_rows must be a positive number of rows, got {max_rows!r}.")
    hint = (f"raise {opt('max_rows')} if the table is meant to be this big, or split it "
            "(kdcrowd aggregate --chunked reads big answer files in parts).")
    if src.kind == "text":
        text = src.text or b""
        n = text.count(b"\n") or text.count(b"\r")
        if n > max_rows + 1:
            raise src.error(f"the table has about {n:,} lines, over the limit of {max_rows:,} rows.", hint=hint,
                            option="max_rows")
    elif src.kind == "parquet":
        try:
            import pyarrow.parquet as pq
            meta = pq.ParquetFile(io.BytesIO(src.data)).metadata
        except Exception:  # noqa: BLE001 - unreadable files get the reader's own message
            return
        if meta.num_rows > max_rows:
            raise src.error(f"the Parquet file holds {meta.num_rows:,} rows, over the limit of {max_rows:,}.",
                            hint=hint, option="max_rows")
        size = sum(meta.row_group(k).total_byte_size for k in range(meta.num_row_groups))
        cells = meta.num_rows * max(meta.num_columns, 1)
        if size > max_bytes or cells > 10 * max_rows:
            raise src.error(f"the Parquet file holds {meta.num_rows:,} rows x {meta.num_columns} columns "
                            f"({_fmt_bytes(size)} uncompressed), over the limit of {_fmt_bytes(max_bytes)} or "
                            f"{10 * max_rows:,} cells.", hint=hint, option="max_rows")


def _looks_like_suffixless(label: str) -> bool:
    """Names such as ``answers.2024`` or ``data.v2`` have a "suffix" that is not a file type."""
    suf = Path(label).suffix[1:]
    return suf.isdigit() or (len(suf) > 0 and suf[0] in "vV" and suf[1:].isdigit())
