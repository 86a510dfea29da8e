"""Session fixtures for integration tests: a real Kafka broker and a real K8s control plane.

* Each stack starts once per session, only if a selected test asks for it.
* If `python -m tests.infra up` is running, it is reused (FLOWD_INFRA_REUSE=0 to disable).
* A stack that cannot be built/started FAILS the run under CI=true and SKIPS (with the
  reason) elsewhere. Kafka jars are fetched on demand (seconds). Missing K8s binaries
  (a cold build takes ~8 min on 2 cores) are built here only under CI=true or with
  FLOWD_INFRA_BUILD=1; otherwise run `python -m tests.infra build k8s` first.
"""
from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest
import pytest_asyncio

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.infra import k8s as _k8s
from tests.infra import kafka as _kafka
from tests.infra import kafka_secure as _kafka_secure
from tests.infra import s3 as _s3
from tests.infra import stack as _stack
from tests.infra.common import in_ci


def _unavailable(what: str, err: BaseException) -> None:
    msg = f"{what} unavailable: {err}"
    if in_ci():
        pytest.fail(f"{msg}\n(CI=true: integration infrastructure must work)", pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def infra_tmp() -> Path:
    d = Path(tempfile.mkdtemp(prefix="flowd-it-"))
    yield d
    import shutil
    shutil.rmtree(d, ignore_errors=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kafka_broker(infra_tmp):
    """A Kafka 4.x broker (KRaft). `.bootstrap` is "127.0.0.1:PORT"."""
    reused = _stack.running_kafka() if _stack.reuse_allowed() else None
    if reused is not None:
        yield reused
        return
    broker = _kafka.KafkaBroker(run_dir=infra_tmp / "kafka")
    try:
        await broker.start()
    except Exception as e:  # noqa: BLE001
        _unavailable("Kafka", e)
    print(f"\n[infra] kafka ready in {broker.start_seconds:.1f}s: {broker.describe()}")
    try:
        yield broker
    finally:
        t = time.monotonic()
        broker.stop()
        print(f"\n[infra] kafka stopped in {time.monotonic() - t:.1f}s")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def secure_kafka_broker(infra_tmp):
    """A second broker with SASL_SSL and mTLS listeners and ACLs on (tests/infra/kafka_secure.py):
    `.sasl_bootstrap`, `.ssl_bootstrap`, `.pki`, `.passwords`, `await .grant(principal, acls)`.
    Started only by the tests that ask for it; never reused from `up`."""
    broker = _kafka_secure.SecureKafkaBroker(run_dir=infra_tmp / "kafka-secure")
    try:
        await broker.start()
    except Exception as e:  # noqa: BLE001
        _unavailable("secure Kafka", e)
    print(f"\n[infra] secure kafka ready in {broker.start_seconds:.1f}s: {broker.describe()}")
    try:
        yield broker
    finally:
        broker.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def k8s_cluster(infra_tmp):
    """etcd + kube-apiserver + kube-scheduler + kwok. `.kubeconfig` is a Path."""
    reused = _stack.running_k8s() if _stack.reuse_allowed() else None
    if reused is not None:
        yield reused
        return
    cluster = _k8s.K8sCluster(run_dir=infra_tmp / "k8s")
    try:
        if _k8s.missing() and (in_ci() or os.environ.get("FLOWD_INFRA_BUILD") == "1"):
            await asyncio.to_thread(_k8s.build, "all")
        await cluster.start()
    except Exception as e:  # noqa: BLE001
        _unavailable("Kubernetes control plane", e)
    print(f"\n[infra] k8s ready in {cluster.start_seconds:.1f}s: {cluster.describe()}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def s3_server(infra_tmp):
    """A real S3-compatible server (gofakes3, tests/infra/s3.py) with one bucket, `.bucket`;
    `.endpoint` is "http://127.0.0.1:PORT" and `.env()` the client's credentials."""
    server = _s3.S3Server(run_dir=infra_tmp / "s3")
    try:
        if _s3.missing() and (in_ci() or os.environ.get("FLOWD_INFRA_BUILD") == "1"):
            await asyncio.to_thread(_s3.build)
        await server.start()
    except Exception as e:  # noqa: BLE001
        _unavailable("S3 server", e)
    print(f"\n[infra] s3 ready in {server.start_seconds:.1f}s: {server.describe()}")
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def k8s_namespace(k8s_cluster):
    """A fresh namespace per test (deleted afterwards; it stays Terminating, which is fine)."""
    name = await k8s_cluster.create_namespace("t")
    yield name
    await k8s_cluster.delete_namespace(name)


@pytest_asyncio.fixture(loop_scope="session")
async def k8s_api(k8s_cluster):
    """A kubernetes_asyncio ApiClient loaded from the cluster's kubeconfig."""
    from kubernetes_asyncio import client, config

    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(k8s_cluster.kubeconfig),
                                  client_configuration=cfg)
    api = client.ApiClient(configuration=cfg)
    try:
        yield api
    finally:
        await api.close()

