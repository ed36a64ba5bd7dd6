"""Item content for display: the text of an item, or a small thumbnail of its image.

The dashboard shows it next to item ids (contested items, teacher vs student, ...)::

    from kdcrowd_core.featurize import ItemContent
    content = ItemContent.from_texts("items.csv")            # or from_images("photos.zip")
    content.kind                  # "texts" or "images"
    "item-17" in content          # has content?
    content.text("item-17")       # full text, or None
    content.short_text("item-17", 80)   # shortened on a word boundary with "…", or None
    content.thumbnail("item-17")  # PNG bytes (longer side <= 128 px), or None (no image / unreadable)
    content.report                # FeaturizeReport: what was read and skipped

Texts are held in memory (they are small); images are read lazily from the folder or zip,
one at a time, and thumbnails are cached (LRU).  Objects are safe to share between threads.
Returned texts are raw user strings: escape them before putting them in HTML.
"""
from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import Any

from .common import FeaturizeReport
from .image_decode import MAX_PIXELS, ImageRejected, decode_image, thumbnail
from .image_sources import ImageEntry, ImageSource, open_images
from .items_table import read_items_table


def shorten(text: str, max_chars: int = 120) -> str:
    """``text`` on one line, cut on a word boundary to at most ``max_chars`` characters with "…"."""
    t = " ".join(str(text).split())
    if len(t) <= max_chars:
        return t
    cut = t[: max(1, max_chars - 1)]
    sp = cut.rfind(" ")
    if sp > max_chars // 2:
        cut = cut[:sp]
    return cut.rstrip(" ,;:.-") + "…"


class ItemContent:
    """Texts or images of items, looked up by item id (str)."""

    def __init__(self, kind: str, report: FeaturizeReport, *, texts: dict[str, str] | None = None,
                 source: ImageSource | None = None, thumb_cache: int = 512):
        self.kind = kind
        self.report = report
        self._texts = texts or {}
        self._source = source
        self._entries: dict[str, ImageEntry] = {e.item_id: e for e in source.entries} if source else {}
        self._thumbs: OrderedDict[tuple, bytes | None] = OrderedDict()
        self._thumb_cache = thumb_cache
        self._lock = threading.Lock()

    # ------------------------------------------------------------ building
    @classmethod
    def from_texts(cls, source: Any, *, item: Any = None, text: Any = None, name: str | None = None,
                   on_duplicate: str = "first") -> ItemContent:
        """From an items table (path, bytes or DataFrame) with an item column and a text column."""
        t = read_items_table(source, item=item, column=text, kind="texts", name=name, on_duplicate=on_duplicate)
        return cls("texts", t.report, texts=dict(zip(t.ids, t.values)))

    @classmethod
    def from_images(cls, source: Any, *, ids: str = "stem", name: str | None = None) -> ItemContent:
        """From a folder or a zip of images (path or bytes); item id = file name without extension by default."""
        src = open_images(source, id_from=ids, name=name)
        src.report.embedded = 0
        return cls("images", src.report, source=src)

    # ------------------------------------------------------------- lookups
    @property
    def ids(self) -> list[str]:
        return list(self._texts) if self.kind == "texts" else list(self._entries)

    def __contains__(self, item_id: Any) -> bool:
        k = str(item_id)
        return k in self._texts or k in self._entries

    def __len__(self) -> int:
        return len(self._texts) + len(self._entries)

    def text(self, item_id: Any) -> str | None:
        """The item's full text (None when it has none or the content is images)."""
        return self._texts.get(str(item_id))

    def short_text(self, item_id: Any, max_chars: int = 120) -> str | None:
        t = self.text(item_id)
        return None if t is None else shorten(t, max_chars)

    def thumbnail(self, item_id: Any, max_side: int = 128, format: str = "PNG") -> bytes | None:
        """Image of the item, longer side at most ``max_side`` px, encoded as PNG (or "JPEG").

        None when the item has no image or its file cannot be decoded (corrupt, bomb, ...).
        """
        e = self._entries.get(str(item_id))
        if e is None or self._source is None:
            return None
        key = (e.item_id, int(max_side), format.upper())
        with self._lock:
            if key in self._thumbs:
                self._thumbs.move_to_end(key)
                return self._thumbs[key]
        try:
            img = decode_image(self._source.read(e), max_pixels=MAX_PIXELS, draft_size=max_side)
            buf = io.BytesIO()
            thumbnail(img, max_side).save(buf, format="JPEG" if format.upper() in ("JPG", "JPEG") else "PNG")
            out: bytes | None = buf.getvalue()
        except (ImageRejected, OSError, ValueError, KeyError):
            out = None
        with self._lock:
            self._thumbs[key] = out
            while len(self._thumbs) > self._thumb_cache:
                self._thumbs.popitem(last=False)
        return out

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
