"""Ctrl-C as a clean cancel: the first SIGINT sets a ``threading.Event``, the second aborts.

``kdcrowd train`` passes the event to :meth:`KDCrowd.fit` as ``cancel``: the
trainer stops at the next mini-batch and raises ``TrainingCancelled``, with the
finished stages still on the trainer (see :mod:`kdcrowd_core.kd.partial`), so
the command can write them before it exits (status 130).
"""
from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sigint_cancels(cancel: threading.Event, *, what: str = "the run", quiet: bool = False) -> Iterator[threading.Event]:
    """Within the block, the first Ctrl-C sets ``cancel`` (and says so); a second one raises KeyboardInterrupt.

    Does nothing outside the main thread (signals can only be handled there)."""
    if threading.current_thread() is not threading.main_thread():
        yield cancel
        return

    def handler(signum, frame):
        if cancel.is_set():
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        cancel.set()
        if not quiet:
            print(f"\ninterrupt: stopping {what} after the current mini-batch and keeping the finished stages "
                  "(Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield cancel
    finally:
        signal.signal(signal.SIGINT, old)
