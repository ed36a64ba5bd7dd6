"""Show the item, not only its id: the text (shortened in the cell, whole on hover/expand) or a thumbnail.

:func:`with_content` adds one column to any per-item table of the pages
(contested items, teacher vs student, per-item quality, labels) when the
dataset has item content (texts table or images zip, see the Data page), and
returns the matching ``st.column_config`` entry.  Texts stay plain text (the
data grid shows them as text, never as markup); thumbnails are PNG data URIs
made by :class:`kdcrowd_core.featurize.ItemContent` (longer side 96 px).
"""
from __future__ import annotations

import base64
from typing import Any

import pandas as pd
import streamlit as st

from . import state

#: thumbnails are made for at most this many rows of a table (the first ones shown)
MAX_THUMBNAILS = 200
TEXT_COLUMN = "text"
IMAGE_COLUMN = "picture"


def _data_uri(png: bytes | None) -> str | None:
    return None if not png else "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def content_values(ds: state.Dataset, item_ids: Any, max_thumbnails: int = MAX_THUMBNAILS) -> tuple[str, list]:
    """``(column name, values)``: each item's text, or thumbnail data URI, or None (no content)."""
    content = ds.content
    lookup = state.content_for(ds)
    ids = [str(i) for i in item_ids]
    if content.kind == "texts":
        return TEXT_COLUMN, [content.text(lookup[i]) if i in lookup else None for i in ids]
    out: list[str | None] = []
    for k, i in enumerate(ids):
        out.append(_data_uri(content.thumbnail(lookup[i], max_side=96)) if i in lookup and k < max_thumbnails
                   else None)
    return IMAGE_COLUMN, out


def with_content(df: pd.DataFrame, ds: state.Dataset, item_column: str | None = None,
                 max_rows: int | None = None) -> tuple[pd.DataFrame, dict]:
    """``df`` with the item's text or picture as its first column (items from ``item_column`` or the index),
    and the column config for it; ``df`` unchanged and ``{}`` when the dataset has no item content."""
    if ds.content is None or df is None or not len(df):
        return df, {}
    view = df if max_rows is None else df.head(max_rows)
    ids = view.index if item_column is None else view[item_column]
    try:
        name, values = content_values(ds, ids)
    except Exception:  # noqa: BLE001 - content that can't be shown must not hide the table
        return df, {}
    out = view.copy()
    if name in out.columns:
        name = f"item {name}"
    out.insert(0, name, values)
    if name.endswith(IMAGE_COLUMN):
        cfg = {name: st.column_config.ImageColumn(name, help="The item's picture (from the item content).",
                                                  width="small")}
    else:
        cfg = {name: st.column_config.TextColumn(name, help="The item's text (from the item content); hover or "
                                                            "double-click a cell to read it whole.",
                                                 width="large")}
    return out, cfg
