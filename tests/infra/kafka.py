"""A real Apache Kafka 4.x broker (KRaft, one combined broker+controller) for tests.

The broker classpath comes from Maven Central through ``kafka-pom.xml`` and is cached in
``~/.cache/flowd-testbin/kafka-<version>/libs``. Every start gets a fresh data dir, two free
loopback ports and a small heap; readiness is checked with aiokafka.
"""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .common import (
    INFRA_DIR,
    InfraUnavailable,
    free_ports,
    log_tail,
    pid_alive,
    port_open,
    spawn,
    stop_pid,
    testbin,
    wait_until,
)

KAFKA_VERSION = os.environ.get("FLOWD_KAFKA_VERSION", "4.1.1")
# must match the log4j-core kafka_2.13 pulls in (4.1.x: 2.24.3, 4.2.x: 2.25.3)
LOG4J_VERSION = os.environ.get("FLOWD_KAFKA_LOG4J_VERSION", "2.24.3")
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
POM = INFRA_DIR / "kafka-pom.xml"

JVM_FLAGS = [
    "-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
    # start-up on 2 busy cores: C1 only (no C2 compile storm; tests move little data) ...
    "-XX:TieredStopAtLevel=1",
]
# ... and an AppCDS archive of the broker's classes, written by the first broker that runs
# (-XX:ArchiveClassesAtExit) and used by every later one: ~2x faster start (docs/infra.md).
# FLOWD_KAFKA_CDS=0 disables it.

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{bport},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{bport},CONTROLLER://127.0.0.1:{cport}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data}
# small machine
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
# single node: every internal topic RF=1 and tiny
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
# fast tests
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
log.cleaner.backoff.ms=500
log.cleaner.dedupe.buffer.size=33554432
log.retention.check.interval.ms=5000
log.initial.task.delay.ms=1000
# flowd contract
auto.create.topics.enable=false
delete.topic.enable=true
log.cleaner.enable=true
"""

LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {root}
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = kafka
logger.kafka.level = {root}
logger.okafka.name = org.apache.kafka
logger.okafka.level = warn
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = info
"""


def libs_dir(version: str = KAFKA_VERSION) -> Path:
    return testbin() / f"kafka-{version}" / "libs"


def libs_present(version: str = KAFKA_VERSION) -> bool:
    return (libs_dir(version) / f"kafka_2.13-{version}.jar").is_file()


def find_java() -> str:
    """Kafka 4.1 runs on Java 17; prefer the machine's OpenJDK 17 over any newer JDK."""
    cand = os.environ.get("FLOWD_JAVA")
    if cand:
        if not os.access(cand, os.X_OK):
            raise InfraUnavailable(f"kafka: FLOWD_JAVA={cand} is not an executable java")
        return cand
    for home in (os.environ.get("JAVA_HOME"), "/usr/lib/jvm/java-17-openjdk-amd64"):
        if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
            return os.path.join(home, "bin", "java")
    java = shutil.which("java")
    if not java:
        raise InfraUnavailable("kafka: no java found (need OpenJDK >= 17; set FLOWD_JAVA)")
    return java


def ensure_libs(version: str = KAFKA_VERSION, *, quiet: bool = True) -> Path:
    """Resolve the broker classpath from Maven Central once; a no-op when cached."""
    out = libs_dir(version)
    if libs_present(version):
        return out
    mvn = shutil.which("mvn")
    if not mvn:
        raise InfraUnavailable("kafka: jars not cached and `mvn` is not installed "
                               f"(expected {out})")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="libs.", dir=out.parent))
    cmd = [mvn, "-B", *(["-q"] if quiet else []), "-f", str(POM),
           f"-Dkafka.version={version}", f"-Dlog4j.version={LOG4J_VERSION}",
           f"{DEPENDENCY_PLUGIN}:copy-dependencies",
           "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not (tmp / f"kafka_2.13-{version}.jar").is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        raise InfraUnavailable(f"kafka: maven could not fetch the broker jars:\n"
                               f"{(r.stdout + r.stderr)[-3000:]}")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def cds_archive(java: str, version: str = KAFKA_VERSION) -> Path:
    """Per Kafka version and per JDK build (a foreign archive would just be ignored)."""
    real = os.path.realpath(java)
    key = hashlib.sha1(f"{real}:{os.stat(real).st_mtime_ns}".encode()).hexdigest()[:10]
    return testbin() / f"kafka-{version}" / f"cds-{key}.jsa"


def new_cluster_id() -> str:
    while True:
        s = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not s.startswith("-"):
            return s


@dataclass
class KafkaBroker:
    """One running broker. ``bootstrap`` is "127.0.0.1:PORT"."""

    run_dir: Path
    version: str = KAFKA_VERSION
    port: int = 0
    controller_port: int = 0
    pid: int | None = None
    owned: bool = True            # False when reusing a broker started by `up`
    start_seconds: float = 0.0
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _cds_dump: tuple[Path, Path] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "broker.log"

    # -- hooks for variants (tests/infra/kafka_secure.py) ----------------------------
    extra_ports = 0  # free ports beyond broker + controller, passed to server_properties

    def server_properties(self, data: Path, extra_ports: list[int]) -> str:
        return SERVER_PROPERTIES.format(bport=self.port, cport=self.controller_port, data=data)

    def format_args(self) -> list[str]:
        """Extra arguments of ``StorageTool format`` (e.g. ``--add-scram``)."""
        return []

    # -- lifecycle ------------------------------------------------------------------
    async def start(self, *, timeout: float = 60.0) -> KafkaBroker:
        t0 = time.monotonic()
        libs = ensure_libs(self.version)
        java = find_java()
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir)
        data = self.run_dir / "data"
        data.mkdir(parents=True)
        self.port, self.controller_port, *extra_ports = free_ports(2 + self.extra_ports)
        props = self.run_dir / "server.properties"
        props.write_text(self.server_properties(data, extra_ports))
        (self.run_dir / "log4j2.properties").write_text(LOG4J2.format(root="info"))
        (self.run_dir / "log4j2-tool.properties").write_text(LOG4J2.format(root="warn"))
        cp = f"{libs}/*"

        def logopt(name: str) -> list[str]:
            return [f"-Dlog4j2.configurationFile={self.run_dir / name}",
                    f"-Dkafka.logs.dir={self.run_dir / 'logs'}"]

        fmt = subprocess.run(
            [java, "-Xmx256m", "-XX:TieredStopAtLevel=1", "-Xshare:auto", *logopt("log4j2-tool.properties"),
             "-cp", cp, "kafka.tools.StorageTool", "format", "--standalone",
             "-t", new_cluster_id(), "-c", str(props), *self.format_args()],
            capture_output=True, text=True)
        (self.run_dir / "format.log").write_text(fmt.stdout + fmt.stderr)
        if fmt.returncode != 0:
            raise InfraUnavailable(f"kafka: storage format failed:\n{fmt.stdout}{fmt.stderr}")
        cds: list[str] = []
        if os.environ.get("FLOWD_KAFKA_CDS", "1") != "0":
            jsa = cds_archive(java, self.version)
            if jsa.is_file():
                cds = [f"-XX:SharedArchiveFile={jsa}"]
            else:
                tmp = jsa.with_name(f"{jsa.name}.{os.getpid()}.tmp")
                cds = [f"-XX:ArchiveClassesAtExit={tmp}"]
                self._cds_dump = (tmp, jsa)
        self._proc = spawn([java, *JVM_FLAGS, *cds, *logopt("log4j2.properties"), "-cp", cp,
                            "kafka.Kafka", str(props)], self.log_path)
        self.pid = self._proc.pid
        (self.run_dir / "kafka.pid").write_text(str(self.pid))
        try:
            await wait_until(lambda: _tcp(self.port), timeout=timeout, what="kafka port",
                             alive=self.alive, log=self.log_path)
            await wait_until(self._admin_ready, timeout=max(5.0, timeout - (time.monotonic() - t0)),
                             what="kafka admin", interval=0.5, alive=self.alive,
                             log=self.log_path)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def alive(self) -> bool:
        return bool(self.pid) and pid_alive(self.pid)

    def stop(self, *, timeout: float = 30.0) -> None:
        if not self.owned:
            return
        stop_pid(self.pid, term_timeout=timeout)
        rc = None
        if self._proc is not None:
            try:
                rc = self._proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        self.pid = None
        if self._cds_dump is not None:
            tmp, final = self._cds_dump
            self._cds_dump = None
            # keep the archive only if the JVM exited by itself (it dumps at exit)
            if rc is not None and rc >= 0 and tmp.is_file() and tmp.stat().st_size > 0:
                tmp.replace(final)
            else:
                tmp.unlink(missing_ok=True)

    # -- readiness ------------------------------------------------------------------
    async def _admin_ready(self) -> bool:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        await admin.start()
        try:
            await admin.describe_cluster()
            name = f"__flowd_ready_{uuid.uuid4().hex[:8]}"
            await admin.create_topics([NewTopic(name, 1, 1)])
            await admin.describe_topics([name])
            await admin.delete_topics([name])
            return True
        finally:
            await admin.close()

    def describe(self) -> str:
        return f"kafka {self.version} at {self.bootstrap} (pid {self.pid}, dir {self.run_dir})"


async def _tcp(port: int) -> bool:
    return port_open(port)


async def start_broker(run_dir: Path, **kw) -> KafkaBroker:
    return await KafkaBroker(run_dir=run_dir, **kw).start()


def last_log(b: KafkaBroker) -> str:
    return log_tail(b.log_path)
