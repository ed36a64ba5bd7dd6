"""``kdcrowd dashboard``: start the Streamlit dashboard with safe settings, from any working directory.

``streamlit run dashboard/app.py`` reads ``.streamlit/config.toml`` only when it
is started from the repository root; started anywhere else it listens on every
network interface.  This command passes every security-relevant setting on the
command line (flags win over config files and ``STREAMLIT_*`` variables):

- ``--server.address 127.0.0.1`` (this machine only) unless ``--host`` says
  otherwise; a non-loopback host prints a warning (there is no login: whoever
  reaches the port can upload files and start training);
- ``--server.enableXsrfProtection true`` and ``--server.enableCORS true``;
- ``--server.maxUploadSize`` (``--max-upload-mb``, default 1024);
- ``--server.headless``, ``--server.runOnSave false``, ``--server.fileWatcherType none``,
  ``--global.developmentMode false``, ``--browser.gatherUsageStats false``.

At start, runs left "running" by a process that is gone are marked interrupted
(``dashboard/launch.py``).  The data directory (runs, datasets) is ``--data-dir``, else ``$KDCROWD_HOME``,
else ``./.kdcrowd`` when it exists, else ``~/.kdcrowd``; it is resolved in the
caller's working directory and handed to the app as ``KDCROWD_HOME``.  The
server runs from the repository root so the theme in ``.streamlit/config.toml``
still applies.  Streamlit is imported by the server process only: this module
(and ``kdcrowd_core``) never imports it.
"""
from __future__ import annotations

import importlib.util
import ipaddress
import os
import sys
from pathlib import Path

from .errors import CrowdDataError

#: Hosts that keep the server on this machine.
LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
DEFAULT_MAX_UPLOAD_MB = 1024

EXPOSE_WARNING = ("WARNING: the dashboard will listen on {host}: any machine that can reach this port can use it. "
                  "There is no login: anyone who reaches it can upload files, read results and start training. "
                  "Use it only on a trusted network, or keep the default (--host 127.0.0.1) and reach it "
                  "through an SSH tunnel.")


def app_path() -> Path:
    """``dashboard/app.py`` next to the ``kdcrowd_core`` package (a source checkout or an editable install)."""
    return Path(__file__).resolve().parents[1] / "dashboard" / "app.py"


def is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def streamlit_flags(*, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB, headless: bool = True) -> list[str]:
    """The ``streamlit run`` options that make the server safe whatever config file is (not) found."""
    return [
        "--server.address", host,
        "--server.port", str(int(port)),
        "--server.enableXsrfProtection", "true",
        "--server.enableCORS", "true",
        "--server.maxUploadSize", str(int(max_upload_mb)),
        "--server.headless", "true" if headless else "false",
        "--server.runOnSave", "false",
        "--server.fileWatcherType", "none",
        "--global.developmentMode", "false",
        "--browser.gatherUsageStats", "false",
        "--client.showErrorDetails", "type",
        "--client.toolbarMode", "minimal",
    ]


def build_command(args) -> tuple[list[str], dict[str, str], Path]:
    """``(argv, environment, working directory)`` of the server process for parsed ``args``."""
    from .paths import HOME_ENV, data_home

    app = app_path()
    if not app.is_file():
        raise CrowdDataError(f"the dashboard app is not installed next to kdcrowd_core (looked for {app}).",
                             hint="run kdcrowd from a source checkout: git clone ... && pip install -e .")
    if not 1 <= int(args.port) <= 65535:
        raise CrowdDataError(f"--port {args.port} is not a TCP port.", hint="give a number from 1 to 65535.")
    if int(args.max_upload_mb) < 1:
        raise CrowdDataError(f"--max-upload-mb {args.max_upload_mb} is too small.", hint="give at least 1 (MB).")
    try:
        home = data_home(args.data_dir)      # resolved here, in the caller's working directory
    except OSError as e:
        raise CrowdDataError(f"cannot create the data directory: {e.strerror or e}.", path=args.data_dir or None,
                             hint="give a writable folder with --data-dir DIR.") from None
    headless = args.headless
    if headless is None:   # no display: don't try to open a browser
        headless = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                             or os.environ.get("WAYLAND_DISPLAY"))
    # dashboard.launch marks the runs whose process is gone as interrupted, then runs `streamlit run`
    argv = [sys.executable, "-m", "dashboard.launch", "run", str(app),
            *streamlit_flags(host=args.host, port=args.port, max_upload_mb=args.max_upload_mb, headless=headless)]
    env = dict(os.environ)
    env[HOME_ENV] = str(home)
    root = app.parents[1]
    # the app imports kdcrowd_core from the same place as this command
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return argv, env, root


def cmd_dashboard(args) -> int:
    argv, env, cwd = build_command(args)
    if not is_loopback(args.host):
        print(EXPOSE_WARNING.format(host=args.host), file=sys.stderr)
    if args.dry_run:
        print(" ".join(argv))
        print(f"KDCROWD_HOME={env['KDCROWD_HOME']}")
        print(f"cwd={cwd}")
        return 0
    if importlib.util.find_spec("streamlit") is None:
        raise CrowdDataError("the dashboard needs streamlit, which is not installed.",
                             hint="pip install -r requirements.txt (or pip install 'kdcrowd[dashboard]').")
    if not args.quiet:
        shown = f"[{args.host}]" if ":" in args.host else args.host
        print(f"kdcrowd dashboard: http://{shown}:{args.port} (data directory {env['KDCROWD_HOME']})",
              file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(cwd)
    os.execve(argv[0], argv, env)   # the server replaces this process: Ctrl-C and signals reach it directly
    return 0   # pragma: no cover


def add_dashboard_parser(sub) -> None:
    d = sub.add_parser(
        "dashboard", help="open the dashboard in the browser (listens on this machine only)",
        description="Start the Streamlit dashboard with safe settings whatever the working directory: "
                    "localhost only, XSRF protection on, an upload size limit. --host 0.0.0.0 exposes it on "
                    "the network (with a warning).")
    d.add_argument("--data-dir", metavar="DIR", default=None,
                   help="where runs and datasets are stored (default: $KDCROWD_HOME, ./.kdcrowd if it exists, "
                        "else ~/.kdcrowd)")
    d.add_argument("--host", default=DEFAULT_HOST,
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes the "
                        "dashboard to the network, with a warning)")
    d.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    d.add_argument("--max-upload-mb", type=int, default=DEFAULT_MAX_UPLOAD_MB, metavar="MB",
                   help=f"largest file the pages accept, in MB (default {DEFAULT_MAX_UPLOAD_MB})")
    b = d.add_mutually_exclusive_group()
    b.add_argument("--headless", dest="headless", action="store_true", default=None,
                   help="do not open a browser window (default when there is no display)")
    b.add_argument("--browser", dest="headless", action="store_false", help="open a browser window")
    d.add_argument("--dry-run", action="store_true", help="print the server command and exit")
    d.set_defaults(func=cmd_dashboard)
