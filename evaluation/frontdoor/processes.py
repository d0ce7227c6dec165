"""The processes an evaluation starts: `whistle serve` with its own state, and a private Mosquitto.

Both are started as a user starts them (a command line and the environment) and stopped by their
own process id: SIGTERM first, then SIGKILL after a bounded wait. `whistle serve` leaves its
embedded PostgreSQL running when it is killed rather than stopped, so after a kill the server of
*its* data directory (the pid in `postmaster.pid`) is asked to shut down as well.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from evaluation.frontdoor.errors import EvaluationError

HOST = "127.0.0.1"
MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto")
STOP_WAIT_S = 30.0


def free_port(host: str = HOST) -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def listening(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def whistle_executable(given: str | None = None) -> str:
    """The `whistle` command: the one given, the one next to this interpreter, or the one on PATH."""
    candidates = [given] if given else [str(Path(sys.executable).with_name("whistle")), shutil.which("whistle")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    raise EvaluationError("the `whistle` command is not installed (make test or pip install -e . creates it)")


def _die_with_parent() -> None:
    """In the service's process, before exec: SIGTERM when the evaluator dies (Linux), so a killed
    evaluation leaves no service running."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def clean_environment() -> dict[str, str]:
    """This process's environment without any WHISTLE_ setting, so only what we set reaches the service."""
    return {k: v for k, v in os.environ.items() if not k.startswith("WHISTLE_")}


def _stop(proc: subprocess.Popen[bytes], wait_s: float = STOP_WAIT_S) -> bool:
    """SIGTERM, then SIGKILL after `wait_s`; True if it stopped on SIGTERM."""
    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(wait_s)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return False


MQTT_SUBSCRIBED = "subscribed to ['"  # collectors.mqtt, once per lane when its subscription is acknowledged


def mqtt_subscriptions(log: str) -> int:
    """How many MQTT subscriptions a service's log reports (a collector's two lanes: 2 per start). Not
    aiokafka's "Updating subscribed topics to: ...", which a bare "subscribed to" also matches: a test that
    counted those published before the collector had subscribed, and the broker kept none of it."""
    return log.count(MQTT_SUBSCRIBED)


def log_tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return "(no log)"


@dataclass
class ServiceConfig:
    """The environment of one `whistle serve` (CONTRACT.md §5, plus the settings the evaluation needs)."""

    state_dir: Path
    http_port: int
    admin_token: str
    mqtt_url: str | None = None  # an external broker; None: the service accepts devices itself
    mqtt_listen: str | None = None  # WHISTLE_MQTT_LISTEN, host:port of the service's own broker
    reading_horizon_days: int = 45
    readings_retention_days: int = 400
    rules_file: Path | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        env = {
            "WHISTLE_STATE_DIR": str(self.state_dir),
            "WHISTLE_HTTP": f"{HOST}:{self.http_port}",
            "WHISTLE_ADMIN_TOKEN": self.admin_token,
            "WHISTLE_READING_HORIZON_DAYS": str(self.reading_horizon_days),
            "WHISTLE_READINGS_RETENTION_DAYS": str(self.readings_retention_days),
        }
        if self.mqtt_url:
            env["WHISTLE_MQTT_URL"] = self.mqtt_url
        if self.mqtt_listen:
            env["WHISTLE_MQTT_LISTEN"] = self.mqtt_listen
            env["WHISTLE_MQTT_OPEN_BROKER"] = "true"  # on loopback, the generator's devices carry no accounts
        if self.rules_file is not None:
            env["WHISTLE_RULES_FILE"] = str(self.rules_file)
        env.update(self.extra)
        return env

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"


class WhistleService:
    """`whistle serve` as its own process; its output goes to `log`."""

    def __init__(self, config: ServiceConfig, *, log: Path, executable: str | None = None) -> None:
        self.config = config
        self.log = log
        self.executable = whistle_executable(executable)
        self.proc: subprocess.Popen[bytes] | None = None
        self.killed = False

    def start(self) -> None:
        """Start the process (returns at once; wait for GET /api/v1/health with the API client)."""
        if self.proc is not None:
            return
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        env = {**clean_environment(), **self.config.environment()}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - our own command, fixed argv
                [self.executable, "serve"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, no locks taken
            )

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def check_running(self, what: str) -> None:
        code = self.exited()
        if code is not None:
            raise EvaluationError(f"`whistle serve` exited with {code} {what}; its log ends:\n{log_tail(self.log)}")

    def stop(self) -> None:
        """Idempotent; after a kill, stops the embedded PostgreSQL of this service's state directory too."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if not _stop(proc):
            self.killed = True
        self._stop_orphaned_postgres()

    def _stop_orphaned_postgres(self) -> None:
        pidfile = self.config.state_dir / "pg" / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        try:  # only the server of this data directory, never a process that reused a stale pid
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return
        if str(pidfile.parent.resolve()) not in cmdline:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
            deadline = time.monotonic() + STOP_WAIT_S
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.2)

    def __enter__(self) -> WhistleService:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class Mosquitto:
    """Debian's Mosquitto on a free loopback port: anonymous, no persistence, no queue limit."""

    def __init__(self, workdir: Path, *, port: int | None = None, max_inflight: int = 1000) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.max_inflight = max_inflight
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> None:
        binary = shutil.which("mosquitto") or next((c for c in MOSQUITTO_CANDIDATES if os.path.exists(c)), None)
        if binary is None:
            raise EvaluationError("mosquitto is not installed (Debian: apt-get install -y mosquitto)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {HOST}\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
            f"max_inflight_messages {self.max_inflight}\nlog_dest stderr\nlog_type error\nlog_type warning\n"
        )
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EvaluationError(f"mosquitto exited with {self.proc.returncode}: {log_tail(self.log)}")
            if listening(HOST, self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise EvaluationError(f"mosquitto did not listen on {HOST}:{self.port} within {timeout_s:.0f} s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            _stop(proc, 10)

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
