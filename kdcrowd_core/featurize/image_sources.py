"""Where images come from: a folder, a zip archive, or a table column of image paths.

A source lists its entries (item id, where, how to read the bytes) without reading any
image, so featurizing streams: one batch of images in memory at a time.  Nothing is
extracted to disk; zip members whose path escapes the archive's folder (zip-slip:
absolute paths, ``..``) are skipped and counted, as are non-image files.
"""
from __future__ import annotations

import io
import os
import posixpath
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import CrowdDataError
from .common import FeaturizeReport, flag

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
#: zip members larger than this (uncompressed) are skipped (zip-bomb guard)
MAX_IMAGE_FILE_BYTES = 64 << 20
#: item id forms: file name without extension, file name, path relative to the folder/zip root
ID_FORMS = ("stem", "name", "path")


@dataclass(frozen=True)
class ImageEntry:
    """One image file of a source: its item id, where it is (for messages) and its key in the source."""

    item_id: str
    where: str
    key: str


def _item_id(rel: str, id_from: str) -> str:
    p = PurePosixPath(rel)
    if id_from == "stem":
        return p.stem if p.suffix else p.name
    if id_from == "name":
        return p.name
    return rel


def _is_junk(rel: str) -> str | None:
    parts = PurePosixPath(rel).parts
    if any(x == "__MACOSX" for x in parts):
        return "macOS resource files (__MACOSX)"
    if PurePosixPath(rel).name.startswith("."):
        return "hidden files"
    return None


class ImageSource:
    """Base: ``entries`` (list of :class:`ImageEntry`), ``read(entry) -> bytes``, ``report``, ``close()``."""

    entries: list[ImageEntry]
    report: FeaturizeReport

    def read(self, entry: ImageEntry) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _finish(self, rels: list[tuple[str, str, str]], id_from: str, flags: dict[str, str] | None) -> None:
        """Build entries from (relative path, where, key); skip non-images; refuse clashing ids."""
        if id_from not in ID_FORMS:
            raise CrowdDataError(f"unknown item id form {id_from!r}.", hint=f"use one of {', '.join(ID_FORMS)}.")
        junk: dict[str, list[str]] = {}
        non_images: list[str] = []
        by_id: dict[str, ImageEntry] = {}
        clashes: list[tuple[str, str, str]] = []
        for rel, where, key in rels:
            j = _is_junk(rel)
            if j:
                junk.setdefault(j, []).append(where)
                continue
            if PurePosixPath(rel).suffix.lower() not in IMAGE_EXTENSIONS:
                non_images.append(where)
                continue
            iid = _item_id(rel, id_from)
            if iid in by_id:
                clashes.append((iid, by_id[iid].where, where))
                continue
            by_id[iid] = ImageEntry(iid, where, key)
        for reason, ex in junk.items():
            self.report.skip(reason, len(ex), ex)
        self.report.skip("not image files (extension is not " + "/".join(sorted(e[1:] for e in IMAGE_EXTENSIONS))
                         + ")", len(non_images), non_images)
        if clashes:
            iid, a, b = clashes[0]
            raise CrowdDataError(
                f"{len(clashes)} images would get the same item id as another: e.g. {iid!r} from {a} and {b}.",
                path=self.report.source,
                hint=f"use the relative path as the item id ({flag(flags, 'ids', 'path')}), or rename the files.")
        self.entries = list(by_id.values())
        self.report.items_read = len(rels)
        if not self.entries:
            if not rels:
                raise CrowdDataError("contains no files.", path=self.report.source,
                                     hint="give a folder or a zip that holds the image files (JPEG, PNG, ...).")
            raise CrowdDataError(f"none of its {len(rels)} files is an image ("
                                 + "; ".join(f"{s['count']} {s['reason']}" for s in self.report.skipped) + ").",
                                 path=self.report.source,
                                 hint="give image files with an image extension (.jpg, .png, ...).")


class FolderImages(ImageSource):
    """Image files under a folder (recursively; symbolic links leaving the folder are skipped)."""

    def __init__(self, folder: str | os.PathLike, *, id_from: str = "stem", flags: dict[str, str] | None = None):
        self.root = Path(folder).resolve()
        self.report = FeaturizeReport(source=str(folder), kind="images")
        if not self.root.is_dir():
            raise CrowdDataError("folder not found.", path=str(folder), hint="check the path.")
        rels: list[tuple[str, str, str]] = []
        outside: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            for fn in sorted(filenames):
                full = Path(dirpath) / fn
                rel = full.relative_to(self.root).as_posix()
                try:
                    real = full.resolve()
                    real.relative_to(self.root)
                except (ValueError, OSError):
                    outside.append(rel)
                    continue
                rels.append((rel, rel, str(real)))
        self.report.skip("links pointing outside the folder (not read)", len(outside), outside)
        self._finish(rels, id_from, flags)

    def read(self, entry: ImageEntry) -> bytes:
        p = Path(entry.key)
        if p.stat().st_size > MAX_IMAGE_FILE_BYTES:
            raise ValueError(f"file larger than {MAX_IMAGE_FILE_BYTES >> 20} MiB")
        return p.read_bytes()


def _zip_escapes(name: str) -> bool:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return True
    norm = posixpath.normpath(name.replace("\\", "/"))
    return norm == ".." or norm.startswith("../") or "/../" in f"/{norm}/"


class ZipImages(ImageSource):
    """Image files inside a zip archive (read member by member; never extracted)."""

    def __init__(self, source: Any, *, name: str | None = None, id_from: str = "stem", flags: dict[str, str] | None = None):
        label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "<zip>")
        self.report = FeaturizeReport(source=label, kind="images")
        self._lock = threading.Lock()
        try:
            if isinstance(source, (bytes, bytearray, memoryview)):
                self._zip = zipfile.ZipFile(io.BytesIO(bytes(source)))
            else:
                self._zip = zipfile.ZipFile(source)
        except FileNotFoundError:
            raise CrowdDataError("file not found.", path=label, hint="check the path.") from None
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise CrowdDataError(f"is not a readable zip archive ({e}).", path=label,
                                 hint="give a .zip of image files, or a folder.") from None
        rels: list[tuple[str, str, str]] = []
        escaping, too_big, encrypted = [], [], []
        for info in self._zip.infolist():
            if info.is_dir():
                continue
            n = info.filename
            if _zip_escapes(n):
                escaping.append(n)
                continue
            if info.flag_bits & 0x1:
                encrypted.append(n)
                continue
            if info.file_size > MAX_IMAGE_FILE_BYTES:
                too_big.append(f"{n} ({info.file_size >> 20} MiB)")
                continue
            rel = posixpath.normpath(n.replace("\\", "/"))
            rels.append((rel, n, n))
        self.report.skip("paths escaping the archive's folder (zip-slip: absolute or '..'; not read)",
                         len(escaping), escaping)
        self.report.skip("encrypted members (not read)", len(encrypted), encrypted)
        self.report.skip(f"members larger than {MAX_IMAGE_FILE_BYTES >> 20} MiB uncompressed (not read)",
                         len(too_big), too_big)
        n_files = len(rels) + len(escaping) + len(encrypted) + len(too_big)
        if n_files == 0:
            self._zip.close()
            raise CrowdDataError("the zip archive is empty (no files).", path=label,
                                 hint="zip the image files themselves (JPEG, PNG, ...).")
        try:
            self._finish(rels, id_from, flags)
        except CrowdDataError:
            self._zip.close()
            raise
        self.report.items_read = n_files

    def read(self, entry: ImageEntry) -> bytes:
        with self._lock:
            with self._zip.open(entry.key) as f:
                data = f.read(MAX_IMAGE_FILE_BYTES + 1)
        if len(data) > MAX_IMAGE_FILE_BYTES:
            raise ValueError(f"member larger than {MAX_IMAGE_FILE_BYTES >> 20} MiB")
        return data

    def close(self) -> None:
        self._zip.close()


class PathListImages(ImageSource):
    """Images named by a table: ``(item id, path)`` pairs, paths relative to ``base_dir``.

    Paths are confined to ``base_dir`` (default: the table's folder): others are skipped and counted.
    """

    def __init__(self, ids: list[str], paths: list[str], where: list[str], *, base_dir: str | os.PathLike,
                 report: FeaturizeReport):
        self.root = Path(base_dir).resolve()
        self.report = report
        self.report.kind = "images"
        outside, missing, non_images = [], [], []
        self.entries = []
        for iid, p, w in zip(ids, paths, where):
            full = (self.root / p).resolve()
            try:
                full.relative_to(self.root)
            except ValueError:
                outside.append(f"{w}: {p}")
                continue
            if not full.is_file():
                missing.append(f"{w}: {p}")
                continue
            if full.suffix.lower() not in IMAGE_EXTENSIONS:
                non_images.append(f"{w}: {p}")
                continue
            self.entries.append(ImageEntry(iid, f"{w}: {p}", str(full)))
        report.skip(f"image paths outside {self.root} (not read)", len(outside), outside)
        report.skip("image files not found", len(missing), missing)
        report.skip("not image files (by extension)", len(non_images), non_images)
        if not self.entries:
            raise CrowdDataError(f"none of the {len(ids)} image paths names a readable image file under "
                                 f"{self.root}.", path=report.source,
                                 hint="paths are relative to the table's folder (or the base folder given).")

    def read(self, entry: ImageEntry) -> bytes:
        return FolderImages.read(self, entry)  # type: ignore[arg-type]


def open_images(source: Any, *, id_from: str = "stem", name: str | None = None,
                flags: dict[str, str] | None = None) -> ImageSource:
    """A folder path, a ``.zip`` path, zip bytes or an open :class:`ImageSource` -> an ImageSource."""
    if isinstance(source, ImageSource):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)) or hasattr(source, "read"):
        return ZipImages(source, name=name, id_from=id_from, flags=flags)
    p = Path(source)
    if p.is_dir():
        return FolderImages(p, id_from=id_from, flags=flags)
    if not p.exists():
        raise CrowdDataError("no such folder or zip file.", path=str(source), hint="check the path.")
    return ZipImages(p, name=name or str(source), id_from=id_from, flags=flags)
