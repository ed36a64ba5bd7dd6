"""Server start of ``kdcrowd dashboard``: ``python -m dashboard.launch run dashboard/app.py [streamlit flags]``.

Before Streamlit starts, the runs store of the data directory (``$KDCROWD_HOME``)
is checked once: runs left "queued"/"running" whose process is gone (a server
killed with ``kill -9``, a crash, a reboot) are marked "interrupted" now, at
server start, not when someone opens a page.  Runs of live processes (another
server on the same data directory) are left alone: see
:meth:`dashboard.runs_db.RunStore.mark_interrupted` (pid, host, process start
time, heartbeat).  Then Streamlit runs with the given arguments, in this process.
"""
from __future__ import annotations

import sys


def recover_runs() -> int:
    """Mark the runs whose process is gone as interrupted; returns how many."""
    from dashboard.runs_db import RunStore
    return RunStore().mark_interrupted()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        n = recover_runs()
    except Exception as exc:  # noqa: BLE001 - a broken runs database must not stop the server
        print(f"kdcrowd dashboard: could not check the runs database: {exc}", file=sys.stderr)
    else:
        if n:
            print(f"kdcrowd dashboard: {n} run(s) whose process had stopped are marked interrupted.",
                  file=sys.stderr)
    from streamlit.web import cli as stcli
    sys.argv = ["streamlit", *argv]
    return stcli.main(prog_name="streamlit")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
