"""Drive headless Chromium as a subprocess: dump the DOM after scripts ran, or take a screenshot.

Test helper only (not part of the package). Each call starts a fresh browser with a throw-away
profile, so runs never share cookies or cache. `--virtual-time-budget` lets the page's timers,
fetches and rendering run to completion before the dump without the test sleeping.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

PHONE = (390, 844)  # an iPhone 12-class viewport in CSS pixels
DESKTOP = (1366, 900)

# Flags that keep a headless run quiet and self-contained: no sandbox (containers run as root),
# no GPU, no QUIC, and none of the background traffic a first run would start.
_BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
)


def chromium_path() -> str | None:
    """The Chromium/Chrome binary: $CHROMIUM if set, else the first known name on PATH."""
    env = os.environ.get("CHROMIUM")
    if env and Path(env).is_file() and os.access(env, os.X_OK):
        return env
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    binary = chromium_path()
    if binary is None:
        raise RuntimeError("no chromium binary found (set $CHROMIUM or install chromium)")
    with tempfile.TemporaryDirectory(prefix="rproxy-chromium-") as profile:
        cmd = [binary, *_BASE_FLAGS, f"--user-data-dir={profile}", *args]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def dump_dom(
    url: str,
    budget_ms: int = 3000,
    *,
    window: tuple[int, int] = DESKTOP,
    timeout_s: float = 60.0,
) -> str:
    """The serialised DOM of `url` after `budget_ms` of virtual time (scripts, fetches done)."""
    proc = _run(
        [
            f"--virtual-time-budget={budget_ms}",
            f"--window-size={window[0]},{window[1]}",
            "--dump-dom",
            url,
        ],
        timeout_s,
    )
    return proc.stdout


def screenshot(
    url: str,
    path: str | Path,
    *,
    window: tuple[int, int] = DESKTOP,
    budget_ms: int = 3000,
    timeout_s: float = 60.0,
) -> Path:
    """Save a PNG of the viewport (`window` in CSS pixels) after `budget_ms` of virtual time."""
    out = Path(path).resolve()
    _run(
        [
            f"--virtual-time-budget={budget_ms}",
            f"--window-size={window[0]},{window[1]}",
            f"--screenshot={out}",
            url,
        ],
        timeout_s,
    )
    if not out.is_file():
        raise RuntimeError(f"chromium did not write {out}")
    return out
