"""The fault suite's fixtures: a deployment per test, and the session's uninterrupted run of the same input."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.devices import DeviceStream
from tests.faults.service import Deployment, Outcome
from tests.faults.workload import Workload, workload

PUBLISH_DEADLINE_S = 300.0
# Measured recoveries (fire after recovery -> ticket), appended by the tests, printed at the end of the session
RECOVERIES: list[tuple[str, float]] = []


@pytest.fixture(scope="session")
def work() -> Workload:
    return workload()


@pytest.fixture
def workdir() -> Iterator[Path]:
    # outside pytest's temporary root: the embedded PostgreSQL runs as its own user (see tests/conftest.py)
    path = Path(tempfile.mkdtemp(prefix="whistle-faults-"))
    yield path
    if not os.environ.get("WHISTLE_FAULTS_KEEP"):  # set: keep the logs and the state of each test
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def deployments(workdir: Path) -> Iterator[Callable[..., Deployment]]:
    """Makes deployments in this test's directory; stops them all at the end."""
    made: list[Deployment] = []

    def make(**kw: object) -> Deployment:
        dep = Deployment(workdir / f"d{len(made)}", **kw)  # type: ignore[arg-type]
        made.append(dep)
        return dep

    yield make
    for dep in made:
        dep.stop()


def publish_all(dep: Deployment, work: Workload, client_id: str) -> DeviceStream:
    stream = DeviceStream(dep.device_url, work.messages, client_id=client_id, deadline_s=PUBLISH_DEADLINE_S)
    stream.start()
    return stream


@pytest.fixture(scope="session")
def reference(work: Workload) -> Iterator[Outcome]:
    """The same input through an embedded `whistle serve` that nothing interrupts."""
    path = Path(tempfile.mkdtemp(prefix="whistle-faults-reference-"))
    dep = Deployment(path)
    try:
        dep.start()
        dep.post_registry(work)
        publish_all(dep, work, "reference").join(PUBLISH_DEADLINE_S)
        dep.settle(work)
        outcome = dep.outcome()
    finally:
        dep.stop()
        shutil.rmtree(path, ignore_errors=True)
    assert outcome.readings == work.readings, "the uninterrupted run did not store every reading"
    assert outcome.alarms, "the uninterrupted run raised no alarm: the workload exercises nothing"
    yield outcome


def assert_same_as_reference(got: Outcome, reference: Outcome, work: Workload) -> None:
    """Readings in = stored, once; the same alarms; a ticket per incident, none twice."""
    assert (got.readings, got.distinct_readings) == (work.readings, work.readings)
    assert got.alarms == reference.alarms
    assert got.tickets == reference.tickets
    assert all(n == 1 for n in got.tickets_per_alarm.values()), got.tickets_per_alarm
    assert [a for a in got.system if a[2] == "active"] == [], "the service still alarms about itself after recovery"


def settled_as_reference(dep: Deployment, stream: DeviceStream, work: Workload, reference: Outcome) -> Outcome:
    """The devices published to the end and the service settled: its outcome, checked against the uninterrupted
    run's."""
    stream.join(300)
    dep.settle(work)
    got = dep.outcome()
    assert_same_as_reference(got, reference, work)
    return got


def wait(cond: Callable[[], object], timeout_s: float, what: str, dep: Deployment | None = None) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if dep is not None:
            dep.check()
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout_s:.0f} s" + (f"\n{dep.logs()}" if dep else ""))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for name, seconds in RECOVERIES:
        terminalreporter.write_line(f"fault suite: {name}: fire after recovery -> ticket in {seconds:.2f} s")
