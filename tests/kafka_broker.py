"""A real single-node Kafka broker for tests: KRaft, broker and controller in one JVM, loopback only.

The jars come from `scripts/ensure-kafka` (Maven Central) into `$WHISTLE_KAFKA_HOME/libs` (default
`<repo>/.kafka/libs`); `ensure_kafka_jars()` runs it, a no-op once they are there. Starting takes two
JVMs: `StorageTool format` on a fresh log directory (a static one-voter quorum, so no `--standalone`
is needed on any KRaft version), then `kafka.Kafka server.properties`. The broker is ready when its
port accepts connections and a metadata request lists it (about 1.7 s here). Anything that cannot
work raises `KafkaUnavailable`, naming what is missing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

from app.broker import free_port

ROOT = Path(__file__).resolve().parents[1]
ENSURE_SCRIPT = ROOT / "scripts" / "ensure-kafka"
HOST = "127.0.0.1"

# Small, and quick to start: serial GC and the C1 compiler only (a test broker moves little data).
JVM_OPTS = (
    "-Xms64m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
)


class KafkaUnavailable(RuntimeError):
    """The test broker cannot be started; the message names the missing piece."""


@dataclass(frozen=True)
class KafkaBroker:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    log: Path
    started_in: float

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


def kafka_home() -> Path:
    """Where scripts/ensure-kafka puts the broker: `$WHISTLE_KAFKA_HOME`, else `<repo>/.kafka`."""
    return Path(os.environ.get("WHISTLE_KAFKA_HOME") or ROOT / ".kafka")


def _server_jar(libs: Path) -> Path | None:
    jars = sorted(libs.glob("kafka_2.*.jar")) if libs.is_dir() else []
    jars = [j for j in jars if not j.name.endswith(("-sources.jar", "-javadoc.jar", "-test.jar"))]
    return jars[-1] if jars else None


def ensure_kafka_jars() -> Path:
    """The libs directory of the broker; runs scripts/ensure-kafka (a no-op when its version is there)."""
    libs = kafka_home() / "libs"
    if not ENSURE_SCRIPT.exists():
        if _server_jar(libs) is not None:
            return libs
        raise KafkaUnavailable(f"no Kafka jars in {libs} and no {ENSURE_SCRIPT} to fetch them")
    try:
        res = subprocess.run(["bash", str(ENSURE_SCRIPT)], check=False, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as exc:
        raise KafkaUnavailable(f"scripts/ensure-kafka did not finish in {exc.timeout} s") from exc
    # A failed fetch is fatal only without jars: a Kafka put in place by hand (no mvn here) still runs.
    if _server_jar(libs) is None:
        raise KafkaUnavailable(
            f"no Kafka jars in {libs}, and scripts/ensure-kafka failed (exit {res.returncode}); "
            f"run it by hand to see why:\n{(res.stdout + res.stderr)[-3000:]}"
        )
    return libs


def find_java() -> str:
    """The java binary: on PATH, else under $JAVA_HOME."""
    found = shutil.which("java")
    if found:
        return found
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home) / "bin" / "java", os.X_OK):
        return str(Path(java_home) / "bin" / "java")
    raise KafkaUnavailable("java is not installed (Kafka needs a JDK 17+: apt-get install openjdk-17-jdk-headless)")


def _storage_tool(libs: Path) -> str:
    """The StorageTool class: `kafka.tools` in the server jar (3.x and 4.x so far), else the tools module's."""
    server_jar = _server_jar(libs)
    if server_jar is not None:
        with zipfile.ZipFile(server_jar) as z:
            if "kafka/tools/StorageTool.class" in z.namelist():
                return "kafka.tools.StorageTool"
    return "org.apache.kafka.tools.StorageTool"


def _server_properties(workdir: Path, port: int, controller_port: int, partitions: int) -> str:
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{HOST}:{controller_port}
listeners=PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}
advertised.listeners=PLAINTEXT://{HOST}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={workdir / "data"}
num.partitions={partitions}
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.check.interval.ms=600000
"""


_LOG4J2 = """\
status = error
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
"""


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _orphan_guard() -> list[str]:
    """`setpriv --pdeathsig` (util-linux) where there is one: the broker dies with the tests, even killed ones."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM"] if setpriv else []


def _java_cmd(java: str, libs: Path, workdir: Path, main: str, *args: str) -> list[str]:
    return [
        *_orphan_guard(),
        java,
        *JVM_OPTS,
        f"-Dlog4j2.configurationFile={workdir / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={workdir}",
        "-cp",
        f"{libs}/*",
        main,
        *args,
    ]


async def _probe(bootstrap: str) -> int:
    """How many brokers a metadata request lists (asked with aiokafka, the client the bus uses)."""
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await client.bootstrap()
        return len(client.cluster.brokers())
    finally:
        await client.close()


def _metadata_ok(bootstrap: str) -> bool:
    """Run the probe on a thread of its own, so it never touches the caller's event loop."""
    result: list[int] = []

    def run() -> None:
        try:
            result.append(asyncio.run(_probe(bootstrap)))
        except Exception:
            result.append(0)

    worker = threading.Thread(target=run, name="kafka-probe", daemon=True)
    worker.start()
    worker.join(10)
    return bool(result and result[0] > 0)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def start_kafka(workdir: Path, *, partitions: int = 4, timeout: float = 60.0) -> KafkaBroker:
    """Format a log directory and start a broker on free loopback ports; returns once it serves metadata."""
    began = time.monotonic()
    java = find_java()
    libs = ensure_kafka_jars()
    workdir.mkdir(parents=True, exist_ok=True)
    port, controller_port = free_port(HOST), free_port(HOST)
    config = workdir / "server.properties"
    config.write_text(_server_properties(workdir, port, controller_port, partitions))
    (workdir / "log4j2.properties").write_text(_LOG4J2)
    log = workdir / "server.log"

    fmt = subprocess.run(
        _java_cmd(java, libs, workdir, _storage_tool(libs), "format", "-t", str(uuid.uuid4()), "-c", str(config)),
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if fmt.returncode != 0:
        raise KafkaUnavailable(
            f"formatting Kafka storage failed (exit {fmt.returncode}): {(fmt.stdout + fmt.stderr)[-3000:]}"
        )

    with log.open("wb") as out:
        proc = subprocess.Popen(
            _java_cmd(java, libs, workdir, "kafka.Kafka", str(config)),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    broker = KafkaBroker(HOST, port, proc, workdir, log, 0.0)
    deadline = began + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise KafkaUnavailable(f"the Kafka broker exited with {proc.returncode}:\n{_tail(log)}")
            if _port_open(port) and _metadata_ok(broker.bootstrap):
                return KafkaBroker(HOST, port, proc, workdir, log, time.monotonic() - began)
            if time.monotonic() > deadline:
                raise KafkaUnavailable(
                    f"the Kafka broker did not serve metadata on {broker.bootstrap} within {timeout} s:\n{_tail(log)}"
                )
            time.sleep(0.1)
    except BaseException:
        stop_kafka(broker)
        raise


def stop_kafka(broker: KafkaBroker, timeout: float = 15.0) -> None:
    """Stop the broker: SIGTERM (a clean shutdown), then SIGKILL if it takes longer than `timeout`."""
    proc = broker.process
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def restart_kafka(broker: KafkaBroker, *, down_s: float = 0.0, timeout: float = 60.0) -> KafkaBroker:
    """Stop the broker cleanly, wait `down_s`, and start it again on the same ports and log directory (its
    topics, their records and the groups' committed offsets kept); returns once it serves metadata."""
    stop_kafka(broker)
    time.sleep(down_s)
    began = time.monotonic()
    java, libs = find_java(), ensure_kafka_jars()
    with broker.log.open("ab") as out:
        proc = subprocess.Popen(
            _java_cmd(java, libs, broker.workdir, "kafka.Kafka", str(broker.workdir / "server.properties")),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    again = KafkaBroker(broker.host, broker.port, proc, broker.workdir, broker.log, 0.0)
    while True:
        if proc.poll() is not None:
            raise KafkaUnavailable(f"the restarted Kafka broker exited with {proc.returncode}:\n{_tail(broker.log)}")
        if _port_open(broker.port) and _metadata_ok(again.bootstrap):
            return KafkaBroker(broker.host, broker.port, proc, broker.workdir, broker.log, time.monotonic() - began)
        if time.monotonic() - began > timeout:
            stop_kafka(again)
            raise KafkaUnavailable(f"the restarted Kafka broker did not serve metadata within {timeout} s")
        time.sleep(0.1)
