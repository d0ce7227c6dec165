"""`whistle demo` as its own process on a fresh state directory and a free port, for the screenshot scripts."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.broker import free_port


@contextmanager
def running_demo(
    households: int, incident_every: float, duration_s: int, *, prefix: str, keep_env: str | None = None
) -> Iterator[str]:
    """Start the demo, yield the link it prints (with its token), stop it (SIGTERM) and remove its state.
    The environment's WHISTLE_ settings are left out, except those starting with `keep_env`."""
    port = free_port()
    state = Path(tempfile.mkdtemp(prefix=prefix))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WHISTLE_") or (keep_env is not None and k.startswith(keep_env))
    }
    env.update(WHISTLE_HTTP=f"127.0.0.1:{port}", WHISTLE_STATE_DIR=str(state))
    exe = Path(sys.executable).with_name("whistle")
    cmd = [str(exe), "demo", "--households", str(households), "--incident-every", str(incident_every)]
    cmd += ["--duration", str(duration_s)]
    log = state / "demo.log"
    with log.open("wb") as out:  # a file, not a pipe: the demo's console never blocks on us
        demo = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        link = None
        deadline = time.monotonic() + 120
        while link is None and time.monotonic() < deadline and demo.poll() is None:
            m = re.search(r"(http://\S+/#token=\S+)", log.read_text(errors="replace"))
            link = m.group(1) if m else None
            time.sleep(0.5)
        if link is None:
            raise SystemExit("the demo printed no link:\n" + log.read_text(errors="replace")[-3000:])
        yield link
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()
        shutil.rmtree(state, ignore_errors=True)
