"""Tiny generated inputs for the featurizer tests: drawn images, short texts, crafted files."""
from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

POSITIVE = ["I love this film, it is wonderful and moving.", "What a fantastic, delightful experience!",
            "Absolutely brilliant, I enjoyed every minute.", "Great service, friendly staff, very happy.",
            "This is the best purchase I have ever made.", "Superb quality, highly recommended."]
NEGATIVE = ["I hate this film, it is awful and boring.", "What a terrible, miserable experience!",
            "Absolutely dreadful, I regretted every minute.", "Horrible service, rude staff, very angry.",
            "This is the worst purchase I have ever made.", "Poor quality, a complete waste of money."]


def draw(shape: str, k: int, size: tuple[int, int] = (96, 80)) -> bytes:
    """A JPEG of a red disc or a blue square on white, position and size varying with ``k``."""
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(k)
    w, h = size
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)
    r = int(rng.integers(18, 30))
    cx, cy = int(rng.integers(r, w - r)), int(rng.integers(r, h - r))
    if shape == "disc":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(220, 30, 30))
    else:
        d.rectangle((cx - r, cy - r, cx + r, cy + r), fill=(30, 30, 220))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def png_with_header_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression-bomb stand-in)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.new("L", (8, 8), 0).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    # IHDR chunk: length(4) type(4) at offset 8, data at 16: width, height (big-endian), then CRC after 13 bytes
    struct.pack_into(">II", data, 16, width, height)
    crc = zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF
    struct.pack_into(">I", data, 29, crc)
    return bytes(data)


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def nearest_centroid_loo(X: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out accuracy of a nearest-centroid classifier on cosine similarity."""
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    hits = 0
    for i in range(len(y)):
        m = np.arange(len(y)) != i
        cents = {c: Xn[m & (y == c)].mean(0) for c in np.unique(y)}
        pred = max(cents, key=lambda c: float(Xn[i] @ cents[c]))
        hits += pred == y[i]
    return hits / len(y)
