"""A private Mosquitto (Debian's `mosquitto`) on a free loopback port, for benchmarks and the evaluation."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

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
    service_port: int | None = None  # with authentication: the collectors' listener (service.passwd, service.acl)

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.proc

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    def service_url(self, username: str, password: str) -> str:
        """The collectors' listener, with a collector account's credentials (authentication only)."""
        assert self.service_port is not None, "this broker was started without authentication"
        return f"mqtt://{quote(username, safe='')}:{quote(password, safe='')}@{HOST}:{self.service_port}"

    def reload(self) -> None:
        """Make Mosquitto read its password files and ACLs again (SIGHUP), after they were rewritten."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        stop_process(self.proc)


def auth_config(auth_dir: Path, *, port: int, service_port: int) -> str:
    """Listener lines for a Mosquitto with authentication (files rendered by whistle.broker_auth).

    Devices and gateways connect on `port`, where every client id is the client's username (so no client
    can take another's session); collectors on `service_port`, whose password file has collector accounts
    only. Anonymous clients are refused on both."""
    user = "user root\n" if os.geteuid() == 0 else ""  # root: keep reading files in private (0700) directories
    return (
        f"{user}per_listener_settings true\n"
        f"listener {port} {HOST}\n"
        "allow_anonymous false\n"
        "use_username_as_clientid true\n"
        f"password_file {auth_dir / 'passwd'}\n"
        f"acl_file {auth_dir / 'acl'}\n"
        f"listener {service_port} {HOST}\n"
        "allow_anonymous false\n"
        f"password_file {auth_dir / 'service.passwd'}\n"
        f"acl_file {auth_dir / 'service.acl'}\n"
    )


def start_mosquitto(
    workdir: Path,
    *,
    port: int | None = None,
    log_subscribe: bool = True,
    max_inflight: int | None = 1000,
    binary: str | None = None,
    auth_dir: Path | None = None,
) -> Broker:
    """Start Mosquitto on a loopback port (a free one by default) and wait until it listens (15 s at most).

    Persistent sessions without a queue limit; `max_inflight` None keeps Mosquitto's own default. With
    `auth_dir` (passwd, acl, service.passwd, service.acl from whistle.broker_auth) anonymous clients are
    refused, client ids are bound to usernames, and collectors get a listener of their own (`service_port`)."""
    binary = binary or find_binary("mosquitto", MOSQUITTO_CANDIDATES)
    port = port or free_port()
    service_port = None
    while auth_dir is not None and service_port in (None, port):
        service_port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf, logf = workdir / "mosquitto.conf", workdir / "mosquitto.log"
    listeners = (
        auth_config(auth_dir, port=port, service_port=service_port)
        if auth_dir is not None and service_port is not None
        else f"listener {port} {HOST}\nallow_anonymous true\n"
    )
    conf.write_text(
        listeners
        + "persistence false\n"
        # With an ACL, `max_queued_messages 0` makes Mosquitto 2.0.11 drop a client whose QoS 1 publish is denied.
        + ("max_queued_messages 1000000000\n" if auth_dir is not None else "max_queued_messages 0\n")
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
                return Broker(port, proc, logf, service_port=service_port)
        except OSError:
            time.sleep(0.05)
    stop_process(proc)
    raise MosquittoError(f"mosquitto did not listen on {HOST}:{port} within 15 s")
