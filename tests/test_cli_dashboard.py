"""`kdcrowd dashboard`: a safe server wherever it is started (issue 10, items 2 and 7).

Started from a folder with a hostile ``.streamlit/config.toml`` and hostile
``STREAMLIT_*`` variables, the server still listens on 127.0.0.1 only, with
XSRF protection on, and uses the data directory given on the command line.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kdcrowd_core.cli import main
from kdcrowd_core.cli_dashboard import is_loopback

ROOT = Path(__file__).resolve().parents[1]
RUN_CLI = "import sys; from kdcrowd_core.cli import main; sys.exit(main())"


def test_core_cli_imports_without_streamlit():
    """kdcrowd_core (cli included) must import where streamlit is not installed."""
    code = ("import sys; sys.modules['streamlit'] = None; sys.modules['plotly'] = None\n"
            "import kdcrowd_core.cli, kdcrowd_core.cli_dashboard, kdcrowd_core.paths\n"
            "kdcrowd_core.cli.build_parser()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr


def test_dry_run_flags_and_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["dashboard", "--dry-run", "--data-dir", "relative_home"]) == 0
    out, err = capsys.readouterr()
    assert "--server.address 127.0.0.1" in out and "--server.enableXsrfProtection true" in out
    assert "--server.maxUploadSize 1024" in out and "--server.headless" in out
    assert f"KDCROWD_HOME={(tmp_path / 'relative_home').resolve()}" in out   # resolved in the caller's folder
    assert "WARNING" not in err
    assert main(["dashboard", "--dry-run", "--host", "0.0.0.0", "--max-upload-mb", "50"]) == 0
    out, err = capsys.readouterr()
    assert "--server.address 0.0.0.0" in out and "--server.maxUploadSize 50" in out
    assert "WARNING" in err and "0.0.0.0" in err
    assert main(["dashboard", "--dry-run", "--port", "70000"]) == 2


def test_loopback_hosts():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.0.0.5")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.168.1.4")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of the sockets listening on ``port``."""
    out = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(name):
            continue
        for line in Path(name).read_text().splitlines()[1:]:
            f = line.split()
            addr, p = f[1].split(":")
            if int(p, 16) == port and f[3] == "0A":
                out.append(addr)
    return out


LOOPBACK_HEX = {"0100007F", "00000000000000000000000001000000"}


@pytest.mark.timeout(180)
def test_server_from_another_folder_is_local_with_xsrf(tmp_path):
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("needs /proc/net/tcp to see which address the server listens on")
    cwd = tmp_path / "elsewhere"
    (cwd / ".streamlit").mkdir(parents=True)
    (cwd / ".streamlit" / "config.toml").write_text(
        '[server]\naddress = "0.0.0.0"\nenableXsrfProtection = false\nenableCORS = false\n')
    # a run left "running" by a server killed with kill -9 (its process is gone)
    from dashboard.runs_db import RunStore
    dead = subprocess.Popen(["true"])
    dead.wait()
    store = RunStore(cwd / "my_home")
    orphan = store.create(config={}, dataset="killed server")
    store.claim(orphan.id, pid=dead.pid)
    store.set_status(orphan.id, "running")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), STREAMLIT_SERVER_ADDRESS="0.0.0.0",
               STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION="false")
    env.pop("KDCROWD_HOME", None)
    log = tmp_path / "server.log"
    proc = subprocess.Popen([sys.executable, "-c", RUN_CLI, "dashboard", "--port", str(port), "--headless",
                             "--data-dir", "my_home"], cwd=cwd, env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    body, cookie = r.read(), r.headers.get("Set-Cookie") or ""
                    break
            except OSError:
                assert time.time() < deadline, "server not healthy in 90 s:\n" + log.read_text()[-3000:]
                time.sleep(0.3)
        assert body.strip() == b"ok"
        addrs = _listening(port)
        assert addrs and set(addrs) <= LOOPBACK_HEX, addrs          # 127.0.0.1 only, not 0.0.0.0 / ::
        assert "_streamlit_xsrf" in cookie                          # XSRF protection on
        req = urllib.request.Request(f"http://127.0.0.1:{port}/_stcore/upload_file/s/f", data=b"x", method="PUT")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        assert e.value.code == 403                                  # an upload without the XSRF token is refused
        assert (cwd / "my_home").is_dir()                           # --data-dir resolved in the caller's folder
        # marked interrupted at server start, before any page was opened (issue 10: it stayed "running")
        assert RunStore(cwd / "my_home").get(orphan.id).status == "interrupted"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
