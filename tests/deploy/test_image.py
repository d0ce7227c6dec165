"""The container image, checked without a container runtime: its build context is what .dockerignore lets
through, the wheel builds from that context alone and installs into a fresh environment, `whistle` runs from
there, and the image's HEALTHCHECK command answers for a running API and for a role's heartbeat."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
PACKAGES = ("whistle", "collectors", "rules", "alerts", "stats", "api", "simulators", "app")


# --- the Dockerfile and its context --------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    stage: int
    op: str
    args: str


def instructions() -> list[Instruction]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped), with their stage index."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out: list[Instruction] = []
    stage = -1
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        op, _, args = line.partition(" ")
        if op.upper() == "FROM":
            stage += 1
        out.append(Instruction(stage, op.upper(), args.strip()))
    return out


def ignore_patterns() -> list[tuple[bool, re.Pattern[str], str]]:
    """.dockerignore as (exception, regex, pattern) in order, with Docker's syntax: `*` within a path
    element, `**` across them, `!` re-includes."""
    out = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rx = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                rx, i = rx + "(.*/)?", i + 3
            elif pattern.startswith("**", i):
                rx, i = rx + ".*", i + 2
            elif pattern[i] == "*":
                rx, i = rx + "[^/]*", i + 1
            elif pattern[i] == "?":
                rx, i = rx + "[^/]", i + 1
            else:
                rx, i = rx + re.escape(pattern[i]), i + 1
        out.append((negate, re.compile(rx + r"\Z"), pattern))
    return out


def in_context(rel: str, patterns: list[tuple[bool, re.Pattern[str], str]]) -> bool:
    """Whether Docker sends `rel` in the build context: the last pattern that matches it or a parent decides."""
    parts = rel.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negate, rx, _ in patterns:
        if any(rx.match(c) for c in candidates):
            excluded = not negate
    return not excluded


def build_context(dest: Path) -> list[str]:
    """Copy the files Docker would send to `dest`; returns their paths. Excluded directories that no
    exception reaches into (.venv, .git, ...) are not walked."""
    patterns = ignore_patterns()
    sent = []
    for top, dirs, files in os.walk(REPO):
        here = Path(top).relative_to(REPO).as_posix()
        prefix = "" if here == "." else here + "/"
        dirs[:] = [
            d
            for d in sorted(dirs)
            if in_context(prefix + d, patterns)
            or any(negate and text.startswith(prefix + d + "/") for negate, _, text in patterns)
        ]
        for name in sorted(files):
            rel = prefix + name
            if in_context(rel, patterns):
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / rel, target)
                sent.append(rel)
    return sent


def test_the_dockerfile_builds_a_wheel_and_runs_it_as_an_unprivileged_whistle() -> None:
    ins = instructions()
    froms = [i for i in ins if i.op == "FROM"]
    assert len(froms) == 2, "multi-stage: a build stage and a runtime stage"
    base = next(i.args for i in ins if i.op == "ARG" and i.args.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-\w+)?", base), base
    assert froms[0].args.endswith("AS build") and froms[1].args.startswith("${PYTHON_IMAGE}")
    build = [i for i in ins if i.stage == 0]
    assert any(i.op == "RUN" and "pip wheel" in i.args for i in build)
    runtime = [i for i in ins if i.stage == 1]
    install = [i.args for i in runtime if i.op == "RUN" and "pip install" in i.args]
    assert install and "--no-index" in install[0] and "from=build" in install[0] and "digital-whistle" in install[0]
    users = [i.args for i in runtime if i.op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the runtime runs as an unprivileged user"
    (health,) = [i.args for i in runtime if i.op == "HEALTHCHECK"]
    assert health.endswith('CMD ["whistle", "health"]')
    assert [i.args for i in runtime if i.op == "ENTRYPOINT"] == ['["whistle"]']
    # every source the build stage copies is in the build context
    patterns = ignore_patterns()
    for copy in (i.args for i in build if i.op == "COPY"):
        *sources, _ = copy.split()
        for src in sources:
            assert (REPO / src).exists(), f"COPY {src}: not in the repository"
            assert in_context(src, patterns), f"COPY {src}: excluded by .dockerignore"


def test_the_build_context_holds_the_sources_and_nothing_local(tmp_path: Path) -> None:
    sent = set(build_context(tmp_path))
    for pkg in PACKAGES:
        shipped = {p.relative_to(REPO).as_posix() for p in (REPO / pkg).rglob("*") if p.is_file()}
        shipped = {p for p in shipped if "__pycache__" not in p}
        assert shipped <= sent, f"{pkg}: {sorted(shipped - sent)[:5]} missing from the build context"
    assert {"pyproject.toml", "README.md", "whistle/store/migrations/0001_init.sql", "rules/default.yaml"} <= sent
    local = [p for p in sent if p.split("/")[0] in (".venv", ".git", ".whistle", ".kafka", "tests", "docs", "deploy")]
    assert local == []
    assert not [p for p in sent if "__pycache__" in p or p.endswith(".pyc")]


# --- the wheel in a fresh environment -----------------------------------------------------------------------


@dataclass(frozen=True)
class Installed:
    venv: Path
    whistle: Path
    workdir: Path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The wheel built from the build context alone and installed into a fresh venv, as the image's two
    stages do. Its dependencies come from this test environment's site-packages (a .pth line; no index),
    so the wheel's own files are what runs."""
    root = tmp_path_factory.mktemp("image")
    context, dist, venv = root / "context", root / "dist", root / "venv"
    build_context(context)
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, f"pip wheel failed in the build context:\n{res.stderr[-3000:]}"
    (wheel,) = dist.glob("digital_whistle-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    res = subprocess.run(
        [str(py), "-m", "pip", "install", "--no-index", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, f"the wheel does not install (its dependencies unmet?):\n{res.stderr[-3000:]}"
    workdir = root / "work"
    workdir.mkdir()
    yield Installed(venv, venv / "bin" / "whistle", workdir)


def run(inst: Installed, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("WHISTLE_")}
    return subprocess.run(
        [str(inst.whistle), *args],
        cwd=inst.workdir,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_whistle_runs_from_the_installed_wheel(installed: Installed) -> None:
    res = run(installed, "--help")
    assert res.returncode == 0, res.stderr
    for command in ("serve", "run", "health", "registry", "simulate"):
        assert command in res.stdout
    py = str(installed.venv / "bin" / "python")
    probe = subprocess.run(
        [
            py,
            "-c",
            "import app, api, whistle.store.migrate as m, rules.config as c; from importlib import resources; "
            "print(app.__file__); print(','.join(f'{x.version:04d}' for x in m.load_migrations())); "
            "print(resources.files('api').joinpath('static/index.html').is_file()); "
            "print(resources.files('rules').joinpath('default.yaml').is_file())",
        ],
        cwd=installed.workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    where, versions, static, rules = probe.stdout.split()
    assert where.startswith(str(installed.venv)), "the wheel's files run, not the source tree"
    shipped = sorted(p.name[:4] for p in (REPO / "whistle/store/migrations").glob("*.sql"))
    assert versions.split(",") == shipped
    assert (static, rules) == ("True", "True")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_the_healthcheck_answers_for_the_api_and_for_a_heartbeat(
    installed: Installed, db_url: str, tmp_path: Path
) -> None:
    port = free_port()
    beat = tmp_path / "health.json"
    env = {
        "WHISTLE_DATABASE_URL": db_url,
        "WHISTLE_HTTP": f"0.0.0.0:{port}",  # as in the image: all interfaces; the check asks loopback
        "WHISTLE_ADMIN_TOKEN": "a-token-long-enough-for-this-test",
        "WHISTLE_STATE_DIR": str(tmp_path / "state"),
        "WHISTLE_HEALTH_FILE": str(beat),
    }
    assert run(installed, "health", env={"WHISTLE_HTTP": f"127.0.0.1:{port}"}).returncode == 1  # nothing yet
    log = (tmp_path / "api.log").open("w")
    proc = subprocess.Popen(
        [str(installed.whistle), "run", "api"],
        cwd=installed.workdir,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("WHISTLE_")}, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        http = {"WHISTLE_HTTP": f"0.0.0.0:{port}"}
        assert wait_until(lambda: run(installed, "health", env=http).returncode == 0, timeout=90), (
            tmp_path / "api.log"
        ).read_text()[-3000:]
        assert "ok: api" in run(installed, "health", env=http).stdout
        # the same command with WHISTLE_HEALTH_FILE reads the heartbeat instead
        assert wait_until(beat.exists, timeout=30)
        res = run(installed, "health", env={"WHISTLE_HEALTH_FILE": str(beat)})
        assert res.returncode == 0 and "ok: api" in res.stdout, res.stderr
        stale = run(installed, "health", "--file", str(beat), "--max-age", "0")
        assert stale.returncode == 1 and "old" in stale.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
    assert proc.returncode == 0
    assert not beat.exists()  # a stopped process is never reported healthy
    gone = run(installed, "health", "--file", str(beat))
    assert gone.returncode == 1 and "no heartbeat" in gone.stderr
    assert run(installed, "health", env={"WHISTLE_HTTP": f"127.0.0.1:{port}"}).returncode == 1
