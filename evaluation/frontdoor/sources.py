"""Behaviour sources: who writes the district, its ground truth and its devices' traffic.

- `simulator`: the project's own simulator through its command line only. `whistle simulate
  --registry-out --truth-out` writes the registry and the truth without publishing; the same
  command with `--backfill` and `WHISTLE_MQTT_URL` publishes the span at QoS 1 as fast as the
  broker takes it. Declared absences are the truth's declared trips (`confounder.elder_away`,
  `declared: true`), as a family would report them.
- `crest`: the independent CREST generator (`python -m evaluation.crest`, evaluation/crest/PARAMS.md),
  which writes registry.json, messages.jsonl (send_at, topic, payload, in publish order),
  truth.jsonl and absences.json; our own QoS 1 publisher sends the messages in file order.

Both write RFC 3339 / epoch-ms event times in the past; a run's span is `days` local days from
`first_day` (UTC+8).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from evaluation.frontdoor.errors import EvaluationError
from evaluation.frontdoor.processes import clean_environment, whistle_executable
from evaluation.frontdoor.publish import DEFAULT_WINDOW, Published, publish_all, read_messages

REPO = Path(__file__).resolve().parents[2]  # evaluation.crest runs from the repository, as it is not installed
LOCAL = timezone(timedelta(hours=8))  # Asia/Shanghai, no daylight saving since 1991
DAY_MS = 86_400_000


def local_midnight_ms(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=LOCAL).timestamp() * 1000)


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, LOCAL).isoformat()


@dataclass(frozen=True, slots=True)
class Absence:
    household_id: str
    start: str
    end: str
    note: str


@dataclass
class Dataset:
    """A district, its truth and where its traffic is, ready to be published."""

    source: str
    seed: int
    households: int
    days: int
    first_day: date
    registry: dict[str, Any]
    truth: list[dict[str, Any]]
    absences: list[Absence]
    workdir: Path
    generator: dict[str, Any] = field(default_factory=dict)

    @property
    def span(self) -> tuple[int, int]:
        lo = local_midnight_ms(self.first_day)
        return lo, lo + self.days * DAY_MS

    @property
    def last_day(self) -> date:
        return self.first_day + timedelta(days=self.days - 1)


class Source(Protocol):
    """Writes a dataset, then publishes its traffic to a broker."""

    name: str
    seed: int

    def prepare(self, workdir: Path) -> Dataset: ...

    def publish(self, dataset: Dataset, mqtt_url: str) -> Published: ...


def _run(
    cmd: list[str], env: dict[str, str], what: str, timeout_s: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        res = subprocess.run(  # noqa: S603 - our own commands
            cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise EvaluationError(f"{what} did not finish within {timeout_s:.0f} s: {' '.join(cmd)}") from None
    if res.returncode != 0:
        raise EvaluationError(f"{what} failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-3000:]}")
    return res


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class CrestSource:
    """`python -m evaluation.crest` (evaluation/crest/PARAMS.md)."""

    seed: int
    households: int = 400
    days: int = 21
    first_day: date = date(2026, 11, 3)
    incident_scale: float = 3.0
    window: int = DEFAULT_WINDOW
    name: str = "crest"

    def command(self, out: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "evaluation.crest",
            "--households",
            str(self.households),
            "--days",
            str(self.days),
            "--seed",
            str(self.seed),
            "--first-day",
            self.first_day.isoformat(),
            "--incident-scale",
            f"{self.incident_scale:g}",
            "--out",
            str(out),
        ]

    def prepare(self, workdir: Path) -> Dataset:
        out = workdir / f"crest-{self.seed}"
        began = time.monotonic()
        _run(self.command(out), clean_environment(), "the CREST generator", 3600, cwd=REPO)
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        absences = [
            Absence(a["household_id"], a["start"], a["end"], a.get("note", ""))
            for a in json.loads((out / "absences.json").read_text(encoding="utf-8"))
        ]
        return Dataset(
            source=self.name,
            seed=self.seed,
            households=self.households,
            days=self.days,
            first_day=self.first_day,
            registry=json.loads((out / "registry.json").read_text(encoding="utf-8")),
            truth=_read_jsonl(out / "truth.jsonl"),
            absences=absences,
            workdir=out,
            generator={
                "command": "python -m evaluation.crest " + " ".join(self.command(out)[3:-2]),
                "incident_scale": self.incident_scale,
                "messages": summary.get("messages"),
                "readings": summary.get("readings"),
                "seconds": round(time.monotonic() - began, 1),
            },
        )

    def publish(self, dataset: Dataset, mqtt_url: str) -> Published:
        published = publish_all(mqtt_url, read_messages(dataset.workdir / "messages.jsonl"), window=self.window)
        expected = dataset.generator.get("messages")
        if expected is not None and published.messages != expected:
            raise EvaluationError(f"{published.messages} of the generator's {expected} messages were acknowledged")
        return published


@dataclass
class SimulatorSource:
    """`whistle simulate` (docs/SIMULATOR.md), publishing with its own `--backfill`."""

    seed: int
    households: int = 600
    days: int = 21
    first_day: date = date(2026, 11, 3)
    params: Path | None = None
    nbiot_batch: float = 1.0  # NB-IoT water meters: a day's readings in one batch, as in the field
    power_batch: float = 1.0  # the utility's power feed: a day's readings in one batch
    ebike_interval: int = 60
    executable: str | None = None
    name: str = "simulator"

    def _args(self) -> list[str]:
        args = [
            "simulate",
            "--households",
            str(self.households),
            "--seed",
            str(self.seed),
            "--start",
            self.first_day.isoformat(),
            "--days",
            str(self.days),
            "--backfill",
            "--nbiot-batch",
            f"{self.nbiot_batch:g}",
            "--power-batch",
            f"{self.power_batch:g}",
            "--ebike-interval",
            str(self.ebike_interval),
        ]
        if self.params is not None:
            args += ["--params", str(self.params)]
        return args

    def prepare(self, workdir: Path) -> Dataset:
        out = workdir / f"simulator-{self.seed}"
        out.mkdir(parents=True, exist_ok=True)
        exe = whistle_executable(self.executable)
        began = time.monotonic()
        files = ["--registry-out", str(out / "registry.json"), "--truth-out", str(out / "truth.jsonl")]
        _run([exe, *self._args(), *files], clean_environment(), "whistle simulate (registry and truth)", 3600)
        truth = _read_jsonl(out / "truth.jsonl")
        absences = [
            Absence(t["subject_ids"][0], rfc3339(int(t["start"])), rfc3339(int(t["end"])), "family: away (evaluation)")
            for t in truth
            if t["kind"] == "confounder.elder_away" and t.get("declared") and t.get("end")
        ]
        return Dataset(
            source=self.name,
            seed=self.seed,
            households=self.households,
            days=self.days,
            first_day=self.first_day,
            registry=json.loads((out / "registry.json").read_text(encoding="utf-8")),
            truth=truth,
            absences=absences,
            workdir=out,
            generator={
                "command": ("whistle " + " ".join(self._args())).replace(f"{REPO}/", ""),
                "params": json.loads(self.params.read_text(encoding="utf-8")) if self.params else {},
                "seconds": round(time.monotonic() - began, 1),
            },
        )

    def publish(self, dataset: Dataset, mqtt_url: str) -> Published:
        exe = whistle_executable(self.executable)
        env = {**clean_environment(), "WHISTLE_MQTT_URL": mqtt_url}
        began = time.monotonic()
        res = _run([exe, *self._args()], env, "whistle simulate --backfill", 7200)
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise EvaluationError(f"whistle simulate --backfill printed no summary:\n{res.stderr[-2000:]}")
        summary = json.loads(lines[-1])
        acked = int(summary.get("acked", summary.get("messages", 0)))
        sent = int(summary.get("messages", acked))
        if acked < sent:
            raise EvaluationError(f"whistle simulate --backfill: {acked} of {sent} messages acknowledged")
        return Published(acked, int(summary.get("readings", 0)), time.monotonic() - began)


def today_local() -> date:
    return datetime.now(UTC).astimezone(LOCAL).date()
