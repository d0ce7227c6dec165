"""A private Mosquitto (Debian's `mosquitto`) on a free loopback port, for benchmarks and the evaluation."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.broker import free_port

HOST = "127.0.0.1"
MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto")


class MosquittoError(RuntimeError):
    """Mosquitto is missing or did not start; the message says which."""


def find_binary(name: str, candidates: Sequence[str] = ()) -> str:
    found = shutil.which(name) or next((c for c in candidates if os.path.exists(c)), None)
    if not found:
        raise MosquittoError(f"{name} is not installed (Debian: apt-get install -y mosquitto mosquitto-clients)")
    return found


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Broker:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    host: str = HOST

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.proc

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)


def start_mosquitto(
    workdir: Path,
    *,
    port: int | None = None,
    log_subscribe: bool = True,
    max_inflight: int | None = 1000,
    binary: str | None = None,
) -> Broker:
    """Start Mosquitto on a loopback port (a free one by default) and wait until it listens (15 s at most).

    Persistent sessions without a queue limit; `max_inflight` None keeps Mosquitto's own default."""
    binary = binary or find_binary("mosquitto", MOSQUITTO_CANDIDATES)
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf, logf = workdir / "mosquitto.conf", workdir / "mosquitto.log"
    conf.write_text(
        f"listener {port} {HOST}\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "max_queued_messages 0\n"
        + (f"max_inflight_messages {max_inflight}\n" if max_inflight is not None else "")
        + "log_dest stderr\n"
        "log_type error\nlog_type warning\n" + ("log_type subscribe\n" if log_subscribe else "")
    )
    with logf.open("wb") as out:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)  # noqa: S603 - fixed argv
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MosquittoError(f"mosquitto exited with {proc.returncode}: {logf.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return Broker(port, proc, logf)
        except OSError:
            time.sleep(0.05)
    stop_process(proc)
    raise MosquittoError(f"mosquitto did not listen on {HOST}:{port} within 15 s")
