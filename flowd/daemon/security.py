"""How flowd's Kafka clients authenticate and encrypt: TLS and SASL settings -> aiokafka kwargs.

:func:`client_security` is the ONE place that turns a :class:`DaemonConfig` into the security
keyword arguments of an aiokafka client; every factory in :mod:`flowd.daemon.kafka` (consumer,
producer, transactional producer, admin) passes them, so no client can be forgotten.

Secrets never come from the command line (argv is visible to every user of the machine in
``ps``): the SASL password is read from ``sasl_password_file`` or ``$FLOWD_SASL_PASSWORD``, the
passphrase of an encrypted client key from ``ssl_key_password_file`` or
``$FLOWD_SSL_KEY_PASSWORD``. Files are read when a client is built, so a rotated secret is
picked up by the next client.

:func:`diagnose` explains a failed bootstrap in one line: aiokafka only says "Unable to
bootstrap" (and logs the cause); one direct connection with aiokafka's own ``create_conn``
gives the real cause (bad password, untrusted certificate, wrong protocol).
"""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowd.daemon.config import DaemonConfig

__all__ = ["MECHANISMS", "PROTOCOLS", "SecurityConfigError", "client_security", "diagnose", "required_acls", "ssl_context"]

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
PASSWORD_ENV = "FLOWD_SASL_PASSWORD"
KEY_PASSWORD_ENV = "FLOWD_SSL_KEY_PASSWORD"


class SecurityConfigError(ValueError):
    """The Kafka security settings are inconsistent or a file they name cannot be read."""


def _secret(what: str, file: str, env_name: str, env: dict[str, str] | os._Environ[str]) -> str | None:
    if file:
        try:
            return Path(file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SecurityConfigError(f"cannot read {what} file {file}: {exc.strerror or exc}") from None
    value = env.get(env_name)
    return value if value else None


def ssl_context(config: DaemonConfig, *, env: dict[str, str] | None = None) -> ssl.SSLContext:
    """Verify the broker against ``ssl_cafile`` (else the system CAs), check its host name
    unless ``ssl_check_hostname`` is off, and present ``ssl_certfile`` for mTLS."""
    try:
        ctx = ssl.create_default_context(cafile=config.ssl_cafile or None)
    except (OSError, ssl.SSLError) as exc:
        raise SecurityConfigError(f"cannot load ssl_cafile {config.ssl_cafile}: {exc}") from None
    ctx.check_hostname = config.ssl_check_hostname
    if config.ssl_certfile:
        passphrase = _secret("ssl key password", config.ssl_key_password_file, KEY_PASSWORD_ENV,
                             os.environ if env is None else env)
        try:
            # without a passphrase, never let OpenSSL prompt on the terminal for one
            ctx.load_cert_chain(config.ssl_certfile, config.ssl_keyfile or None,
                                password=passphrase if passphrase is not None else (lambda: b""))
        except (OSError, ssl.SSLError) as exc:
            hint = "" if passphrase else f" (an encrypted key needs ssl_key_password_file or ${KEY_PASSWORD_ENV})"
            raise SecurityConfigError(
                f"cannot load client certificate {config.ssl_certfile} / key {config.ssl_keyfile or '(in the same file)'}: "
                f"{exc}{hint}") from None
    elif config.ssl_keyfile:
        raise SecurityConfigError("ssl_keyfile is set but ssl_certfile is not (mTLS needs both)")
    return ctx


def client_security(config: DaemonConfig, *, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``security_protocol``/``ssl_context``/``sasl_*`` kwargs of every aiokafka client."""
    protocol = config.security_protocol.upper()
    if protocol not in PROTOCOLS:
        raise SecurityConfigError(f"security_protocol {config.security_protocol!r} is not one of {', '.join(PROTOCOLS)}")
    kw: dict[str, Any] = {"security_protocol": protocol}
    tls = protocol in ("SSL", "SASL_SSL")
    if not tls and (config.ssl_cafile or config.ssl_certfile or config.ssl_keyfile):
        raise SecurityConfigError(f"ssl_* settings need security_protocol SSL or SASL_SSL (it is {protocol})")
    if tls:
        kw["ssl_context"] = ssl_context(config, env=env)
    if protocol.startswith("SASL_"):
        mechanism = (config.sasl_mechanism or "PLAIN").upper()
        if mechanism not in MECHANISMS:
            raise SecurityConfigError(f"sasl_mechanism {config.sasl_mechanism!r} is not one of {', '.join(MECHANISMS)}")
        if not config.sasl_username:
            raise SecurityConfigError(f"security_protocol {protocol} needs sasl_username")
        password = _secret("sasl password", config.sasl_password_file, PASSWORD_ENV, os.environ if env is None else env)
        if password is None:
            raise SecurityConfigError(
                f"security_protocol {protocol} needs a password: set sasl_password_file or ${PASSWORD_ENV}")
        kw.update(sasl_mechanism=mechanism, sasl_plain_username=config.sasl_username, sasl_plain_password=password)
    elif config.sasl_username or config.sasl_password_file:
        raise SecurityConfigError(f"sasl_* settings need security_protocol SASL_PLAINTEXT or SASL_SSL (it is {protocol})")
    return kw


def _hosts(brokers: str) -> list[tuple[str, int]]:
    out = []
    for item in brokers.split(","):
        item = item.strip()
        if not item:
            continue
        host, _, port = item.rpartition(":")
        out.append((host.strip("[]") or item, int(port) if port.isdigit() else 9092))
    return out


def _explain(exc: BaseException, config: DaemonConfig) -> str:
    text = str(exc).removeprefix("[Error 58] ")
    if isinstance(exc, ssl.SSLCertVerificationError):
        where = f"ssl_cafile {config.ssl_cafile}" if config.ssl_cafile else "the system CAs (set ssl_cafile)"
        if "mismatch" in (exc.verify_message or "").lower():
            return f"the broker's TLS certificate does not match its address: {exc.verify_message}"
        return f"the broker's TLS certificate is not trusted by {where}: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc} (is security_protocol {config.security_protocol} right for this listener?)"
    if type(exc).__name__ == "SaslAuthenticationFailed":
        return (f"SASL authentication as {config.sasl_username!r} ({config.sasl_mechanism or 'PLAIN'}) was refused: "
                f"{text.removeprefix('SaslAuthenticationFailed: ')}")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return (f"no answer within {config.connect_timeout:g} s (connect_timeout; is security_protocol "
                f"{config.security_protocol} right for this listener?)")
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if type(exc).__name__ == "KafkaConnectionError" and "closed" in text:
        return (f"the broker closed the connection (is security_protocol {config.security_protocol} right for "
                "this listener? a listener that requires a client certificate closes it without ssl_certfile)")
    return f"{type(exc).__name__}: {text}"


async def diagnose(config: DaemonConfig) -> str:
    """Why the brokers cannot be reached: one line, from one direct connection per bootstrap
    server (bounded by ``connect_timeout``)."""
    from aiokafka.conn import create_conn

    try:
        kw = client_security(config)
    except SecurityConfigError as exc:
        return str(exc)
    reasons = []
    for host, port in _hosts(config.brokers):
        try:
            async with asyncio.timeout(config.connect_timeout):
                conn = await create_conn(host, port, client_id=config.client_id or "flowd",
                                         request_timeout_ms=int(config.connect_timeout * 1000), **kw)
            conn.close()
        except Exception as exc:  # noqa: BLE001 - every cause is worth one line
            reasons.append(f"{host}:{port}: {_explain(exc, config)}")
            continue
        return f"{host}:{port} accepts a connection now (a transient failure?)"
    return "; ".join(reasons) or f"no bootstrap servers in {config.brokers!r}"


def required_acls(config: DaemonConfig, role: str) -> list[tuple[str, str, str, str]]:
    """The least ACLs a principal needs, as ``(resource, name, pattern, operation)`` tuples
    (docs/daemon.md prints the same table; the integration test grants exactly these).

    * ``daemon``: ``flowd serve`` with ``create_topics`` off (topics made beforehand); with it
      on, add ``("topic", prefix, "prefixed", "create")``.
    * ``producer``: ``flowd submit/stop/approve/resume`` (write ``runs``) and ``status``,
      ``events``, ``submit --wait`` (read ``events``), ``runs --daemon``, ``status``,
      ``ui --daemon`` (read the compacted ``status`` view). The idempotent producer needs no
      cluster ACL: Kafka >= 3.0 grants IdempotentWrite with Write on any topic (KIP-679).
    * ``gc``: ``flowd gc --daemon`` (reads the ``status`` view, writes its tombstones).
    """
    t = config.topics
    if role == "daemon":
        return [
            # runs, events, external, subscriptions, snapshots, deadletter: all read and written
            ("topic", config.prefix, "prefixed", "read"),
            ("topic", config.prefix, "prefixed", "write"),
            ("topic", config.prefix, "prefixed", "describe"),
            # the daemons' group (partition ownership, offsets in transactions) and the triggers' group
            ("group", config.group_id, "literal", "read"),
            ("group", f"{config.group_id}.triggers", "literal", "read"),
            # one transactional producer per runs partition: <group>.<runs topic>.<N>
            ("transactional_id", f"{config.group_id}.{t.runs}.", "prefixed", "write"),
            ("transactional_id", f"{config.group_id}.{t.runs}.", "prefixed", "describe"),
        ]
    if role == "producer":
        return [
            ("topic", t.runs, "literal", "write"),
            ("topic", t.runs, "literal", "describe"),
            ("topic", t.events, "literal", "read"),
            ("topic", t.events, "literal", "describe"),
            ("topic", t.status, "literal", "read"),
            ("topic", t.status, "literal", "describe"),
        ]
    if role == "gc":
        return [
            ("topic", t.status, "literal", "read"),
            ("topic", t.status, "literal", "describe"),
            ("topic", t.status, "literal", "write"),
        ]
    raise ValueError(f"unknown role {role!r} (daemon, producer, gc)")
