"""The daemon and the user commands over secured Kafka: TLS, SASL (PLAIN, SCRAM), mTLS, ACLs.

Against the real broker of tests/infra/kafka_secure.py (SASL_SSL and mTLS listeners, ACLs on).
The daemon runs with exactly the ACLs ``required_acls(config, "daemon")`` lists (docs/daemon.md),
the commands with the ``producer`` ones. A wrong password, an untrusted CA and a principal
without ACLs each end in one clear line on stderr within seconds, for a command and for
``flowd serve`` alike. Passwords reach the subprocesses through the environment or a file,
never argv.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import msgspec
import pytest

from flowd.daemon.config import DaemonConfig
from flowd.daemon.kafka import ensure_topics
from flowd.daemon.security import required_acls
from flowd.daemon.testing import test_config
from tests.integration.test_daemon_inprocess import CHAIN, serving, uuids

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.asyncio(loop_scope="session")]

# a failure must be reported this fast (connect_timeout is 10 s; the real figure is ~1-3 s,
# most of it the interpreter starting)
FAIL_WITHIN = 12.0


def sasl_config(broker, tmp_path: Path, user: str, *, base: DaemonConfig | None = None, password: str | None = None,
                mechanism: str = "SCRAM-SHA-256", cafile: Path | None = None, **overrides) -> DaemonConfig:
    secret = tmp_path / f"{user}-{mechanism}.password"
    secret.write_text((password if password is not None else broker.passwords[user]) + "\n")
    secret.chmod(0o600)
    values = dict(security_protocol="SASL_SSL", ssl_cafile=str(cafile or broker.pki.ca),
                  sasl_mechanism=mechanism, sasl_username=user, sasl_password_file=str(secret), connect_timeout=10.0,
                  **overrides)
    if base is None:
        return test_config(broker.sasl_bootstrap, name="sec", state_dir=str(tmp_path / "state"), **values)
    return msgspec.structs.replace(base, brokers=broker.sasl_bootstrap, **values)


def bus_flags(config: DaemonConfig) -> list[str]:
    """The command-line flags of ``config`` (no secret among them: the password goes by env)."""
    flags = ["--brokers", config.brokers, "--prefix", config.prefix, "--security-protocol", config.security_protocol]
    for field in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "sasl_username"):
        if getattr(config, field):
            flags += [f"--{field.replace('_', '-')}", getattr(config, field)]
    if config.security_protocol.startswith("SASL"):
        flags += ["--sasl-mechanism", config.sasl_mechanism]
    return flags


async def flowd(*argv: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str, str, float]:
    """``python -m flowd ARGV`` -> (exit code, stdout, stderr, seconds)."""
    t0 = time.monotonic()
    proc = await anyio.to_thread.run_sync(lambda: subprocess.run(
        [sys.executable, "-m", "flowd", *argv], capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, **(env or {})}))
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


async def test_daemon_and_commands_work_with_exactly_the_documented_acls(secure_kafka_broker, tmp_path: Path) -> None:
    b = secure_kafka_broker
    admin = sasl_config(b, tmp_path, "admin", mechanism="SCRAM-SHA-512")
    await ensure_topics(admin)  # topics made beforehand: the daemon then needs no CREATE right
    daemon = sasl_config(b, tmp_path, "daemon", base=admin, mechanism="SCRAM-SHA-256", create_topics=False)
    producer = sasl_config(b, tmp_path, "producer", base=admin, mechanism="SCRAM-SHA-512")
    await b.grant("User:daemon", required_acls(daemon, "daemon"))
    await b.grant("User:producer", required_acls(producer, "producer"))
    spec = tmp_path / "chain.yaml"
    spec.write_text(CHAIN)
    env = {"FLOWD_SASL_PASSWORD": b.passwords["producer"]}
    async with serving(daemon) as (_daemon, events):
        code, out, err, _ = await flowd("submit", str(spec), "--wait", *bus_flags(producer), env=env)
        assert code == 0, err
        run_id = uuids(out)[0]
        assert (await events.wait_done(run_id)).status == "succeeded"
        code, out, err, _ = await flowd("status", run_id, *bus_flags(producer), env=env)
        assert code == 0 and f"chain {run_id}: succeeded" in out, err
        # the spec compiled by the daemon (a submission that carries YAML text) works the same way
        code, out, err, _ = await flowd("submit", str(spec), "--send-spec", "--wait", *bus_flags(producer), env=env)
        assert code == 0, err
        code, out, err, _ = await flowd("events", "--run", uuids(out)[0], *bus_flags(producer), env=env)
        assert code == 0 and '"type":"done"' in out, err
        # the producer may not read what only the daemon reads
        code, _, err, _ = await flowd("replay", "--run", run_id, "--group-id", daemon.group_id, *bus_flags(producer),
                                      env=env)
        assert code == 1 and "not authorized" in one_line(err)
        # it lists the daemons' runs (the status view), but forgetting them needs the gc rows
        code, out, err, _ = await flowd("runs", "--daemon", "--output", "json", *bus_flags(producer), env=env)
        assert code == 0 and run_id in out, err
        gc = ["gc", "--daemon", "--keep-days", "0", "--keep-last", "0", *bus_flags(producer)]
        code, _, err, _ = await flowd(*gc, env=env)
        assert code == 1 and "not authorized" in one_line(err)
        await b.grant("User:producer", required_acls(producer, "gc"))
        code, out, err, _ = await flowd(*gc, env=env)
        assert code == 0 and f"forgot {run_id}" in out, err


async def test_plain_and_mutual_tls_clients(secure_kafka_broker, tmp_path: Path) -> None:
    b = secure_kafka_broker
    admin = sasl_config(b, tmp_path, "admin", mechanism="PLAIN")
    await ensure_topics(admin)
    code, out, err, _ = await flowd("events", *bus_flags(admin), env={"FLOWD_SASL_PASSWORD": b.passwords["admin"]})
    assert code == 0 and out == "", err
    # mTLS: the principal is the client certificate's CN; its key is encrypted, the passphrase in a file
    mtls = msgspec.structs.replace(admin, brokers=b.ssl_bootstrap, security_protocol="SSL", sasl_username="",
                                   sasl_password_file="", ssl_certfile=str(b.pki.client_cert),
                                   ssl_keyfile=str(b.pki.client_key_encrypted))
    flags = [*bus_flags(mtls), "--ssl-key-password-file", str(b.pki.client_key_passphrase)]
    code, _, err, _ = await flowd("events", *flags)
    assert code == 1 and "not authorized" in one_line(err)  # authenticated, but no ACL yet
    await b.grant("User:flowd-client", [("topic", admin.topics.events, "literal", "read"),
                                        ("topic", admin.topics.events, "literal", "describe")])
    code, out, err, _ = await flowd("events", *flags)
    assert code == 0 and out == "", err
    # without the client certificate the mTLS listener hangs up; said in one line
    code, _, err, _ = await flowd("events", *bus_flags(msgspec.structs.replace(mtls, ssl_certfile="", ssl_keyfile="")))
    assert code == 1 and "closed the connection" in one_line(err)


FAILURES = {
    "wrong-password": ({"password": "not-the-password"}, "SASL authentication as 'producer'"),
    "untrusted-ca": ({"rogue_ca": True}, "TLS certificate is not trusted"),
    "no-acls": ({"user": "nobody"}, "not authorized"),
}


@pytest.mark.parametrize("case", list(FAILURES))
async def test_a_command_fails_fast_in_one_line(secure_kafka_broker, tmp_path: Path, case: str) -> None:
    b = secure_kafka_broker
    admin = sasl_config(b, tmp_path, "admin", mechanism="SCRAM-SHA-512")
    await ensure_topics(admin)
    how, expected = FAILURES[case]
    user = how.get("user", "producer")
    config = sasl_config(b, tmp_path, user, base=admin, cafile=b.pki.rogue_ca if how.get("rogue_ca") else None)
    await b.grant("User:producer", required_acls(config, "producer"))
    spec = tmp_path / "chain.yaml"
    spec.write_text(CHAIN)
    env = {"FLOWD_SASL_PASSWORD": how.get("password", b.passwords[user])}
    for argv in (["submit", str(spec)], ["status", "some-run"]):
        code, out, err, seconds = await flowd(*argv, *bus_flags(config), env=env)
        line = one_line(err)
        assert code == 1 and expected in line and out == "", line
        assert seconds < FAIL_WITHIN, f"{argv[0]} took {seconds:.1f} s to fail"


@pytest.mark.parametrize("case", list(FAILURES))
async def test_the_daemon_fails_fast_in_one_line(secure_kafka_broker, tmp_path: Path, case: str) -> None:
    b = secure_kafka_broker
    how, expected = FAILURES[case]
    user = how.get("user", "daemon")
    config = sasl_config(b, tmp_path, user, password=how.get("password"),
                         cafile=b.pki.rogue_ca if how.get("rogue_ca") else None)
    code, _, err, seconds = await flowd("serve", *bus_flags(config), "--sasl-password-file", config.sasl_password_file,
                                        "--metrics-port", "-1", "--state-dir", config.state_dir,
                                        "--executor", "instant")
    expected = expected.replace("'producer'", "'daemon'")
    last = [ln for ln in err.splitlines() if ln.startswith("flowd serve:")]
    assert code == 1 and len(last) == 1 and expected in last[0], err
    assert "Traceback" not in err
    assert seconds < FAIL_WITHIN, f"flowd serve took {seconds:.1f} s to fail"


@pytest.mark.parametrize("missing", ["group", "transactional_id"])
async def test_a_daemon_missing_one_acl_fails_fast_naming_it(secure_kafka_broker, tmp_path: Path, missing: str) -> None:
    b = secure_kafka_broker
    admin = sasl_config(b, tmp_path, "admin", mechanism="SCRAM-SHA-512")
    await ensure_topics(admin)
    # a principal of its own per case: ACLs granted in one case must not help the other
    daemon = sasl_config(b, tmp_path, "daemon", base=admin, create_topics=False,
                         group_id=f"{admin.group_id}-{missing}")
    await b.grant("User:daemon", [acl for acl in required_acls(daemon, "daemon") if acl[0] != missing])
    code, _, err, seconds = await flowd(
        "serve", *bus_flags(daemon), "--sasl-password-file", daemon.sasl_password_file, "--metrics-port", "-1",
        "--state-dir", daemon.state_dir, "--executor", "instant", "--group-id", daemon.group_id,
        env={"FLOWD_CREATE_TOPICS": "false"}, timeout=60)
    last = [ln for ln in err.splitlines() if ln.startswith("flowd serve:")]
    assert code == 1 and len(last) == 1 and "not authorized" in last[0], err[-3000:]
    assert seconds < FAIL_WITHIN, f"flowd serve took {seconds:.1f} s to fail"
