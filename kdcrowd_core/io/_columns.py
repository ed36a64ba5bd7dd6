"""Which column holds what: name-based detection of the item, worker and label columns.

Names are compared after :func:`norm` (lower case, spaces/hyphens/dots to
``_``).  Each role has a first tier of unmistakable names and a second tier of
looser ones; the second tier is used only when the first finds nothing.  Two
candidates in the same tier is an error that names both: the reader never
guesses between them.
"""
from __future__ import annotations

import re
from typing import Any
from collections.abc import Sequence

from ..errors import CrowdDataError, opt


def norm(name: Any) -> str:
    """Normalised column name for matching: ``"Worker ID"`` -> ``"worker_id"``."""
    s = str(name).strip().lower()
    s = re.sub(r"[\s\-\.]+", "_", s)
    return s


#: role -> tiers of normalised names.  Documented in docs/formats.md.
ALIASES: dict[str, list[list[str]]] = {
    "item": [
        ["item", "task", "question", "item_id", "itemid", "task_id", "taskid", "question_id", "questionid",
         "hitid", "hit_id", "object", "object_id", "sample_id", "example_id", "image_id", "doc_id", "document_id",
         "text_id", "unit_id", "_unit_id", "subject_id"],
        ["id", "image", "sample", "example", "document", "doc", "url", "image_url", "filename", "file", "key",
         "unit", "subject", "song", "input_id", "input_item"],
    ],
    "worker": [
        ["worker", "annotator", "worker_id", "workerid", "annotator_id", "annotatorid", "performer",
         "performer_id", "assignment:worker_id", "labeler", "labeller", "labeler_id", "labeller_id",
         "rater", "rater_id", "_worker_id", "coder", "coder_id", "judge", "judge_id"],
        ["user", "user_id", "userid", "completed_by", "annotator_name", "worker_name", "contributor",
         "contributor_id", "participant", "participant_id", "respondent", "respondent_id", "crowd_worker"],
    ],
    "label": [
        ["label", "answer", "class", "worker_label", "annotation", "response", "answer_label", "crowd_label",
         "noisy_label", "given_label"],
        ["category", "choice", "choices", "rating", "judgment", "judgement", "vote", "result", "output",
         "sentiment", "tag", "value", "pred_label", "prediction", "y"],
    ],
}

#: names that hold the *true* label: never an answer, a gold column for read_gold.
TRUTH_NAMES = ["gold", "truth", "true_label", "ground_truth", "groundtruth", "gold_label", "true_class",
               "golden", "correct", "correct_label", "correct_answer", "expected", "expected_label",
               "true", "reference", "reference_label", "target", "gt", "true_answer"]

#: what read_gold looks for as the label column (first tier truth names, then answer-like names)
GOLD_LABEL_TIERS = [TRUTH_NAMES, ["label", "class", "answer", "category", "y", "value"]]

# Platform prefixes (compared case-insensitively)
MTURK_INPUT = "input."
MTURK_ANSWER = "answer."


def strip_prefix(name: Any) -> str:
    """``"Input.song"`` -> ``"song"``, ``"INPUT:image"`` -> ``"image"``, ``"GOLDEN:result"`` -> ``"result"``."""
    s = str(name)
    low = s.lower()
    for p in ("input.", "answer.", "input:", "output:", "golden:", "assignment:"):
        if low.startswith(p):
            return s[len(p):]
    return s


def is_truth_name(name: Any) -> bool:
    n = norm(strip_prefix(name))
    return n in TRUTH_NAMES or n.startswith(("true_", "gold_", "truth")) or n.endswith(("_truth", "_gold"))


def is_label_like(name: Any) -> bool:
    """Columns a features table must not use as features (labels and truths)."""
    n = norm(name)
    return is_truth_name(name) or n in ("label", "class", "answer", "labels", "classes", "category")


ID_LIKE = {"id", "item_id", "itemid", "item", "task_id", "task", "question_id", "question", "image_id",
           "image", "image_url", "img", "img_url", "url", "uri", "file", "filename", "file_name", "song",
           "track", "audio", "audio_url", "video", "video_url", "key", "name", "doc_id", "text_id", "object_id",
           "sample_id", "example_id", "path"}


def is_id_like(name: Any) -> bool:
    n = norm(strip_prefix(name))
    return n in ID_LIKE or n.endswith(("_id", "_url", "_uri", "_key", "_file", "_path"))


def resolve_explicit(columns: Sequence[Any], wanted: Any, role: str, *, path: str | None, kwarg: str) -> Any:
    """The column the user named: exact, then case-insensitive, then an int position."""
    cols = list(columns)
    if wanted in cols:
        return wanted
    if isinstance(wanted, str):
        matches = [c for c in cols if str(c) == wanted] or [c for c in cols if norm(c) == norm(wanted)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise CrowdDataError(f"the {role} column {wanted!r} matches several columns {matches}.", path=path,
                                 hint=f"give the exact column name in {opt(kwarg)}.", option=kwarg)
        if wanted.strip().lstrip("-").isdigit():
            wanted = int(wanted)
    if isinstance(wanted, int) and not isinstance(wanted, bool):
        if -len(cols) <= wanted < len(cols):
            return cols[wanted]
    raise CrowdDataError(f"there is no column {wanted!r} for the {role}; columns are {_show(cols)}.",
                         path=path, column=None,
                         hint=f"give one of the column names (or a 0-based position) in {opt(kwarg)}.", option=kwarg)


def _show(cols: Sequence[Any], n: int = 30) -> str:
    cols = list(cols)
    s = ", ".join(repr(c) for c in cols[:n])
    return "[" + s + (f", ... ({len(cols)} in all)" if len(cols) > n else "") + "]"


def candidates(columns: Sequence[Any], role: str, exclude: Sequence[Any] = ()) -> tuple[list[Any], int]:
    """Columns whose name matches ``role``: (matches of the first tier that matches, tier index)."""
    ex = set(map(str, exclude))
    cols = [c for c in columns if str(c) not in ex]
    for t, names in enumerate(ALIASES[role]):
        found = [c for c in cols if norm(c) in names]
        if found:
            return found, t
    return [], -1


def detect_roles(columns: Sequence[Any], *, item=None, worker=None, label=None, path: str | None,
                 roles: Sequence[str] = ("item", "worker", "label"), call: str = "read_answers") -> dict[str, Any]:
    """Map each role to one column, or raise a CrowdDataError naming candidates and how to fix.

    Explicit names win; detected columns never reuse an explicitly named one.
    Truth-like columns (``gold``, ``true_label``, ...) are never taken as the label.
    """
    cols = list(columns)
    given = {"item": item, "worker": worker, "label": label}
    out: dict[str, Any] = {}
    for role in roles:
        if given[role] is not None:
            out[role] = resolve_explicit(cols, given[role], role, path=path, kwarg=role)
    problems = []
    for role in roles:
        if role in out:
            continue
        taken = list(out.values())
        if role == "label":
            taken += [c for c in cols if is_truth_name(c)]
        found, tier = candidates(cols, role, exclude=taken)
        if len(found) == 1:
            out[role] = found[0]
        elif len(found) > 1:
            problems.append((role, found))
        else:
            problems.append((role, []))
    if problems:
        role, found = problems[0]
        names = ", ".join(ALIASES[role][0][:6])
        if found:
            msg = (f"{len(found)} columns could be the {role} column: {_show(found)}; "
                   f"the reader does not guess between them.")
            hint = f"name it with {opt(role)} (e.g. {str(found[0])!r})."
        else:
            msg = (f"no {role} column: none of the columns {_show(cols)} is named like one "
                   f"(expected a name such as {names}).")
            hint = f"name it with {opt(role)}, or rename the column."
        others = [f"{r} ({'ambiguous' if f else 'missing'})" for r, f in problems[1:]]
        if others:
            msg += " Also: " + ", ".join(others) + "."
        raise CrowdDataError(msg, path=path, hint=hint, option=role)
    return out
