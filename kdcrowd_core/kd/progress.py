"""Training progress that reads: one bar per stage, fold and round, shared by the CLI and the dashboard.

The trainer's events (see :class:`.context._Run`) carry ``stage``, ``epoch``/``n_epochs``, ``message``
(which model: ``"out-of-fold teacher 2/5"``, ``"student (robust=none)"``, ``"stage 2"`` ...), ``round``
and ``overall_progress``.  :func:`bar_key` names the bar an event belongs to, so that five cross-fit
folds and two rounds are separate, labelled bars instead of one zig-zag line; :func:`bars` folds an
event list into the latest state of every bar; :func:`eta_seconds` is the remaining time from the
overall progress.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

#: Stages whose single event is a whole step (no epochs).
INSTANT = ("mv", "ds")


def is_note(ev: Mapping) -> bool:
    """An event that reports a decision, not an epoch (e.g. ``"student: kept robust=none"``)."""
    return ev.get("stage") not in INSTANT and ev.get("stage") != "done" and int(ev.get("n_epochs") or 0) <= 1 \
        and ":" in str(ev.get("message") or "")


def bar_key(ev: Mapping, rounds: int | None = None) -> str | None:
    """The label of the bar ``ev`` advances (``None`` for the final ``done`` event and for notes).

    ``round 2 · out-of-fold teacher 3/5`` when the run has several rounds, else the model's own label.
    """
    stage = ev.get("stage")
    if stage in (None, "done") or is_note(ev):
        return None
    if str(stage).startswith("baseline-"):
        return f"baseline: classifier on {stage[len('baseline-'):].upper()} labels"
    label = str(ev.get("message") or stage)
    r = int(ev.get("round") or 1)
    multi = (rounds or 0) > 1 or r > 1
    return f"round {r} · {label}" if multi and stage not in INSTANT else label


def job_group(ev: Mapping) -> tuple:
    """The bars whose models may train side by side (kd/jobs.py): the teachers of round 1, the baselines, and
    in round r > 1 the fold models with stage 2 of round r - 1; otherwise one bar's stage and round."""
    stage = str(ev.get("stage"))
    r = int(ev.get("round") or 1)
    if stage.startswith("baseline-"):
        return ("baseline", 0)
    if stage == "stage2":
        return ("fold models and stage 2", r + 1)
    if stage == "teacher" and r > 1:
        return ("fold models and stage 2", r)
    return (stage, r)


def bars(events: Iterable[Mapping], finished: bool = False) -> dict[str, dict]:
    """Every bar in the order it started: ``{label: {"epoch", "n_epochs", "fraction", "loss",
    "train_accuracy", "valid_accuracy", "done", "stage", "round"}}``.

    A bar is done when it reached its last epoch, when a bar of another group (:func:`job_group`) started
    after its last event (a stage stopped early), or when the run is ``finished``.  Bars of one group can be
    jobs trained side by side (kd/jobs.py): they take turns in the events and stay open until they end.
    """
    events = list(events)
    rounds = max([int(e.get("round") or 1) for e in events] or [1])
    out: dict[str, dict] = {}
    last_event: dict[str, int] = {}
    group: dict[str, tuple] = {}
    starts: list[tuple[int, tuple]] = []
    for i, ev in enumerate(events):
        key = bar_key(ev, rounds)
        if key is None:
            continue
        if key not in out:
            group[key] = job_group(ev)
            starts.append((i, group[key]))
        last_event[key] = i
        n = int(ev.get("n_epochs") or 1)
        ep = int(ev.get("epoch") or 0)
        out[key] = {"stage": ev.get("stage"), "round": int(ev.get("round") or 1), "epoch": ep, "n_epochs": n,
                    "fraction": min(1.0, ep / n) if n else 1.0, "loss": ev.get("loss"),
                    "train_accuracy": ev.get("train_accuracy"), "valid_accuracy": ev.get("valid_accuracy"),
                    "done": ep >= n}
    for k in out:
        if any(i > last_event[k] and g != group[k] for i, g in starts):
            out[k]["done"] = True
            out[k]["fraction"] = 1.0
    if finished:
        for v in out.values():
            v["done"], v["fraction"] = True, 1.0
    return out


def eta_seconds(elapsed: float, overall: float) -> float | None:
    """Remaining seconds from the elapsed time and the overall progress (None before 2 % or after the end)."""
    if not 0.02 < overall < 1.0:
        return None
    return elapsed * (1.0 - overall) / overall


def describe(bar: Mapping) -> str:
    """``epoch 3/50 · loss 0.4123 · acc 81.0 %`` (what a bar's text shows)."""
    bits = []
    if bar.get("n_epochs", 1) > 1 or bar.get("stage") not in INSTANT:
        bits.append(f"epoch {bar['epoch']}/{bar['n_epochs']}")
    if bar.get("loss") is not None:
        bits.append(f"loss {bar['loss']:.4f}")
    if bar.get("train_accuracy") is not None:
        bits.append(f"acc {bar['train_accuracy']:.1%}")
    if bar.get("valid_accuracy") is not None:
        bits.append(f"valid {bar['valid_accuracy']:.1%}")
    if bar.get("done") and bar.get("stage") in INSTANT:
        bits = ["done"] + bits[1:]
    return " · ".join(bits)


class CliProgress:
    """The ``kdcrowd train`` progress: one tqdm bar per stage, fold and round (``desc`` = :func:`bar_key`),
    each with its own rate and ETA, plus an ``overall`` bar whose ETA is :func:`eta_seconds`.

    Call it with every event; ``bars`` holds the tqdm bars (closed by :meth:`close`).
    """

    def __init__(self, quiet: bool = False, rounds: int = 1, file=None):
        import sys
        self.quiet = quiet
        self.rounds = rounds
        self.file = file or sys.stderr
        self.bars: dict[str, object] = {}
        self.current: str | None = None
        self.open: list[str] = []          # bars not yet closed (jobs side by side keep several open)
        self.group: dict[str, tuple] = {}  # each bar's job_group

    def __call__(self, ev: Mapping) -> None:
        if self.quiet:
            return
        from tqdm.auto import tqdm
        if is_note(ev):
            tqdm.write(f"  {ev.get('message')}", file=self.file)
            return
        key = bar_key(ev, self.rounds)
        if key is None:
            return
        if key not in self.bars:
            for k in [k for k in self.open if self.group[k] != job_group(ev)]:   # a stage that stopped early
                self._finish(k)
            self.group[key] = job_group(ev)
            self.bars[key] = tqdm(total=int(ev.get("n_epochs") or 1), desc=f"{key:>34}", unit="ep", leave=True,
                                  file=self.file)
            self.open.append(key)
        self.current = key
        b = self.bars[key]
        b.n = min(int(ev.get("epoch") or 0), int(b.total))
        post = {}
        if ev.get("loss") is not None:
            post["loss"] = f"{ev['loss']:.4f}"
        if ev.get("train_accuracy") is not None:
            post["train_acc"] = f"{ev['train_accuracy']:.3f}"
        if ev.get("valid_accuracy") is not None:
            post["valid_acc"] = f"{ev['valid_accuracy']:.3f}"
        eta = eta_seconds(float(ev.get("elapsed") or 0.0), float(ev.get("overall_progress") or 0.0))
        if eta is not None:
            post["run_eta"] = f"{eta:.0f}s ({float(ev.get('overall_progress') or 0):.0%})"
        b.set_postfix(post, refresh=True)
        if b.n >= b.total and key in self.open:
            self._finish(key)

    def _finish(self, key: str) -> None:
        b = self.bars[key]
        b.n = b.total or b.n
        b.close()
        self.open.remove(key)

    def close(self) -> None:
        for b in self.bars.values():
            b.close()
