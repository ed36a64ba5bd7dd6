"""Safe image decoding (Pillow) and the EfficientNet-Lite preprocessing.

Decoding refuses decompression bombs (more than ``max_pixels`` pixels, checked from the
header before any pixel is decoded), corrupt and truncated files; each refusal is an
:class:`ImageRejected` with a short reason that the featurizer counts in its report.

Preprocessing follows the official EfficientNet(-Lite) evaluation pipeline
(tensorflow/tpu ``models/official/efficientnet``): the centred square crop of side
``224 / (224 + 32)`` of the shorter side, resized to 224 x 224 with bicubic filtering, then
``(pixel - 127) / 128`` per channel — the Lite models' own normalisation (``MEAN_RGB = 127``,
``STDDEV_RGB = 128`` in ``lite/efficientnet_lite_builder.py``), not the 0.485/0.229-style one.
"""
from __future__ import annotations

import io
import warnings

import numpy as np

IMAGE_SIZE = 224
CROP_PADDING = 32
LITE_MEAN = 127.0
LITE_STD = 128.0
#: decompression-bomb guard: images with more pixels than this are refused (about 16k x 16k ... 8k x 12k)
MAX_PIXELS = 100_000_000


class ImageRejected(Exception):
    """An image file that cannot be used; ``reason`` is the report's skip reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}{': ' + detail if detail else ''}")
        self.reason = reason
        self.detail = detail


REASON_BOMB = "images over the decompression-bomb limit (too many pixels; not decoded)"
REASON_CORRUPT = "corrupt, truncated or unreadable image files"
REASON_NOT_IMAGE = "files with an image extension that are not images"
REASON_TOO_BIG = "image files too large to read"


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS, draft_size: int = IMAGE_SIZE + CROP_PADDING):
    """Decode bytes into an RGB ``PIL.Image``; raise :class:`ImageRejected` for anything unusable.

    ``draft_size``: JPEGs are decoded at the smallest 1/2, 1/4, 1/8 scale whose shorter side
    stays at least this large (fast, and enough for a 224 x 224 crop).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w <= 0 or h <= 0:
                raise ImageRejected(REASON_CORRUPT, f"size {w}x{h}")
            if w * h > max_pixels:
                raise ImageRejected(REASON_BOMB, f"{w}x{h} pixels > {max_pixels:,}")
            if img.format == "JPEG" and draft_size:
                s = draft_size / min(w, h)
                img.draft("RGB", (max(1, int(np.ceil(w * s))), max(1, int(np.ceil(h * s)))))
            img.load()
            try:
                img = ImageOps.exif_transpose(img)
            except Exception:  # noqa: BLE001 - a broken EXIF block: keep the pixels as stored
                pass
            if img.mode != "RGB":
                if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                    rgba = img.convert("RGBA")
                    bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    img = Image.alpha_composite(bg, rgba).convert("RGB")
                else:
                    img = img.convert("RGB")
            return img
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageRejected(REASON_BOMB, str(e)[:120]) from None
    except UnidentifiedImageError:
        raise ImageRejected(REASON_NOT_IMAGE, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, IndexError, TypeError) as e:
        raise ImageRejected(REASON_CORRUPT, str(e)[:120] or type(e).__name__) from None


def preprocess(img, size: int = IMAGE_SIZE) -> np.ndarray:
    """RGB PIL image -> float32 array (3, size, size): centre crop, bicubic resize, (x - 127) / 128."""
    from PIL import Image
    w, h = img.size
    side = min(w, h) * size / (size + CROP_PADDING)
    left, top = (w - side) / 2, (h - side) / 2
    img = img.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
    a = np.asarray(img, dtype=np.float32)
    a = (a - LITE_MEAN) / LITE_STD
    return np.ascontiguousarray(a.transpose(2, 0, 1))


def thumbnail(img, max_side: int = 128):
    """A copy of the image shrunk to at most ``max_side`` pixels on its longer side."""
    from PIL import Image
    t = img.copy()
    t.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return t
