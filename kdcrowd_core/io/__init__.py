"""Readers and writers for crowd answers, gold labels and item features.

Every reader takes a path, bytes or a binary file object (``name=`` gives the
file name for messages when the bytes have none), refuses files over
``max_bytes`` (default :data:`DEFAULT_MAX_BYTES`, 1 GiB) and raises
:class:`~kdcrowd_core.errors.CrowdDataError` — naming the file, the line or
column, what was expected and how to fix it — for anything wrong with the
data.  Formats, column-name rules and report fields: docs/formats.md.
"""
from ._source import DEFAULT_MAX_BYTES
from .answers import FORMATS, detect_format, read_answers
from .features import Features, read_features
from .gold import read_gold
from .load import load_crowd
from .options import ReadOptions
from .writers import to_jsonable, write_answers, write_json, write_table

__all__ = ["read_answers", "read_gold", "read_features", "load_crowd", "write_answers", "write_table",
           "write_json", "to_jsonable", "Features", "FORMATS", "DEFAULT_MAX_BYTES", "detect_format",
           "ReadOptions"]
