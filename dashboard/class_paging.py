"""Class x class charts with many classes: one page of classes at a time.

A K x K heatmap per worker is 1 million cells with 1,000 classes (the Workers
grid of 24 workers sent a 248 MB figure).  Above :data:`CLASS_PAGE` classes the
pages show the block of one page of classes — the most frequent first — and a
"Classes" control pages through them; the charts then hold at most
``CLASS_PAGE`` x ``CLASS_PAGE`` cells per matrix, whatever K is.  The pure
helpers (:func:`class_order`, :func:`page_codes`, :func:`block`) have no
streamlit; :func:`picker` draws the control.
"""
from __future__ import annotations

import numpy as np

#: The most classes a class x class chart shows at once.
CLASS_PAGE = 20


def class_order(counts: np.ndarray) -> np.ndarray:
    """Class codes, most frequent first (ties by code)."""
    return np.argsort(-np.asarray(counts), kind="stable")


def n_pages(n_classes: int, size: int = CLASS_PAGE) -> int:
    return max(1, -(-int(n_classes) // size))


def page_codes(order: np.ndarray, page: int, size: int = CLASS_PAGE) -> np.ndarray:
    """The class codes of page ``page`` (1-based) of ``order``."""
    page = min(max(int(page), 1), n_pages(len(order), size))
    return np.asarray(order[(page - 1) * size: page * size], dtype=np.int64)


def block(M: np.ndarray, codes: np.ndarray | None) -> np.ndarray:
    """``M[..., codes, codes]``: the rows and columns of ``codes`` of one or more K x K matrices
    (indexed directly: the full matrices are never copied).  ``codes`` None: ``M`` unchanged."""
    if codes is None:
        return M
    codes = np.asarray(codes, dtype=np.int64)
    return np.asarray(M)[..., codes[:, None], codes[None, :]]


def picker(classes, counts: np.ndarray, *, key: str, what: str = "matrices"):
    """``(codes, shown classes)`` of the page chosen on the page (``(None, classes)`` when K <= CLASS_PAGE)."""
    import streamlit as st
    K = len(classes)
    if K <= CLASS_PAGE:
        return None, classes
    order = class_order(counts)
    pages = n_pages(K)
    page = st.number_input(f"Classes shown in the {what} (page of {CLASS_PAGE}, most frequent first; "
                           f"{pages} pages)", min_value=1, max_value=pages, value=1, step=1, key=key)
    codes = page_codes(order, page)
    lo = (int(page) - 1) * CLASS_PAGE + 1
    st.caption(f"{K:,} classes: the {what} show classes {lo}–{lo + len(codes) - 1} by frequency "
               "(rows and columns of these classes only; the rest of each row is in the other pages).")
    return codes, classes.take(codes)
