"""The real broker with its security on: a SASL_SSL listener, an mTLS listener and ACLs.

The same Kafka 4.x KRaft broker as :mod:`tests.infra.kafka`, with two more listeners:

* ``SASL_SSL`` (``.sasl_bootstrap``): TLS with a broker certificate for ``127.0.0.1`` and
  ``localhost`` signed by a CA this harness generates with ``openssl``, then SASL ``PLAIN``,
  ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``. SCRAM users are created by the broker's own tool,
  ``StorageTool format --add-scram`` (the KRaft bootstrap); PLAIN users by the listener's JAAS.
* ``SSL`` (``.ssl_bootstrap``): TLS with a required client certificate (mTLS); the principal is
  the certificate's CN (``ssl.principal.mapping.rules``), e.g. ``User:flowd-client``.

ACLs are on (``StandardAuthorizer``; nothing is allowed without an ACL). ``User:admin`` and the
plaintext listener's ``User:ANONYMOUS`` (the harness itself, the controller) are super users;
the plaintext listener stays for the harness (readiness, :meth:`SecureKafkaBroker.grant`).
Every other user starts with no rights: tests grant exactly what they mean to test through
the Admin API (``CreateAcls``) with :meth:`SecureKafkaBroker.grant`.

The PKI lives next to the run dir (``<run_dir>-pki``) and is generated once per run dir.
"""
from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .common import InfraUnavailable
from .kafka import KafkaBroker

USERS = ("admin", "daemon", "producer", "nobody")

# CreateAcls enums (org.apache.kafka.common.acl / resource)
RESOURCE = {"topic": 2, "group": 3, "cluster": 4, "transactional_id": 5}
OPERATION = {"all": 2, "read": 3, "write": 4, "create": 5, "delete": 6, "alter": 7, "describe": 8,
             "cluster_action": 9, "describe_configs": 10, "alter_configs": 11, "idempotent_write": 12}
PATTERN = {"literal": 3, "prefixed": 4}
ALLOW = 3


@dataclass(frozen=True)
class Pki:
    """Paths of the test PKI (PEM). ``rogue_ca`` signed nothing the broker uses."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def broker(self) -> Path:  # certificate chain + PKCS#8 key, Kafka's PEM keystore
        return self.dir / "broker.pem"

    @property
    def client_cert(self) -> Path:
        return self.dir / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.dir / "client.key"

    @property
    def client_key_encrypted(self) -> Path:
        return self.dir / "client-enc.key"

    @property
    def client_key_passphrase(self) -> Path:
        return self.dir / "client-enc.pass"

    @property
    def rogue_ca(self) -> Path:
        return self.dir / "rogue-ca.pem"


def _openssl(*args: str, cwd: Path) -> None:
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise InfraUnavailable(f"kafka pki: openssl {' '.join(args[:2])} failed: {r.stderr[-2000:]}")


def generate_pki(directory: Path) -> Pki:
    """A CA, a broker certificate (SAN 127.0.0.1, localhost), a client certificate (CN
    flowd-client; its key also encrypted with a passphrase) and an unrelated CA. EC P-256 keys:
    fast to generate. Idempotent: an existing complete PKI is reused."""
    pki = Pki(directory)
    if pki.rogue_ca.is_file():
        return pki
    directory.mkdir(parents=True, exist_ok=True)
    d = directory
    key = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    for ca in ("ca", "rogue-ca"):
        _openssl("genpkey", *key, "-out", f"{ca}.key", cwd=d)
        _openssl("req", "-x509", "-new", "-key", f"{ca}.key", "-out", f"{ca}.pem", "-days", "30",
                 "-subj", f"/CN=flowd test {ca}", cwd=d)
    (d / "broker.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, cn in (("broker", "localhost"), ("client", "flowd-client")):
        _openssl("genpkey", *key, "-out", f"{name}.key", cwd=d)
        _openssl("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "30", "-extfile", f"{name}.ext", cwd=d)
    (d / "broker.pem").write_text((d / "broker.crt").read_text() + (d / "broker.key").read_text())
    passphrase = secrets.token_hex(8)
    pki.client_key_passphrase.write_text(passphrase + "\n")
    _openssl("pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", "client.key", "-out", "client-enc.key",
             "-passout", f"file:{pki.client_key_passphrase}", cwd=d)
    return pki


@dataclass
class SecureKafkaBroker(KafkaBroker):
    """A broker with SASL_SSL and mTLS listeners and ACLs on (see the module docstring).
    ``passwords[user]`` is each user's password (PLAIN and SCRAM alike)."""

    sasl_port: int = 0
    ssl_port: int = 0
    passwords: dict[str, str] = field(default_factory=dict)
    extra_ports = 2

    @property
    def pki(self) -> Pki:
        return generate_pki(self.run_dir.with_name(self.run_dir.name + "-pki"))

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def ssl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ssl_port}"

    def password_file(self, user: str, directory: Path) -> Path:
        """The user's password in a file of mode 0600 (secrets never go on a command line)."""
        path = directory / f"{user}.password"
        path.write_text(self.passwords[user] + "\n")
        path.chmod(0o600)
        return path

    def server_properties(self, data: Path, extra_ports: list[int]) -> str:
        self.sasl_port, self.ssl_port = extra_ports
        if not self.passwords:
            self.passwords = {user: f"{user}-{secrets.token_hex(6)}" for user in USERS}
        pki = self.pki
        base = super().server_properties(data, extra_ports)
        listeners = (f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port},"
                     f"SASL_SSL://127.0.0.1:{self.sasl_port},SSL://127.0.0.1:{self.ssl_port}")
        lines = []
        for line in base.splitlines():
            if line.startswith(("listeners=", "advertised.listeners=", "listener.security.protocol.map=")):
                continue
            lines.append(line)
        plain_users = " ".join(f'user_{u}="{p}"' for u, p in self.passwords.items())
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        lines += [
            f"listeners={listeners}",
            f"advertised.listeners={listeners}",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL",
            "listener.name.sasl_ssl.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            ("listener.name.sasl_ssl.plain.sasl.jaas.config="
             f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"),
            f"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={scram}",
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={pki.broker}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={pki.ca}",
            "listener.name.ssl.ssl.client.auth=required",
            "listener.name.sasl_ssl.ssl.client.auth=none",
            "ssl.principal.mapping.rules=RULE:^CN=([^,]+)$/$1/,DEFAULT",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users=User:ANONYMOUS;User:admin",
            "allow.everyone.if.no.acl.found=false",
            # a failed authentication is answered at once (the default delays it by 100 ms)
            "connection.failed.authentication.delay.ms=0",
        ]
        return "\n".join(lines) + "\n"

    def format_args(self) -> list[str]:
        args = []
        for user, password in self.passwords.items():
            for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                args += ["--add-scram", f"{mech}=[name={user},password={password}]"]
        return args

    async def grant(self, principal: str, acls: list[tuple[str, str, str, str]]) -> None:
        """Allow ``principal`` (``User:daemon``) each ``(resource, name, pattern, operation)``,
        e.g. ``("topic", "flowd.", "prefixed", "read")``, through the Admin API (CreateAcls v1)
        over the plaintext listener, whose principal is a super user."""
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.protocol.admin import CreateAclsRequest

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10000)
        await admin.start()
        try:
            for resource, name, pattern, operation in acls:
                request = CreateAclsRequest(RESOURCE[resource], name, PATTERN[pattern], principal, "*",
                                            OPERATION[operation], ALLOW)
                response = await admin._send_request(request)
                for code, message in response.creation_responses:
                    if code:
                        raise RuntimeError(f"CreateAcls {principal} {operation} {resource}:{name}: "
                                           f"error {code} {message}")
        finally:
            await admin.close()

    def describe(self) -> str:
        return (f"secure kafka {self.version} at {self.bootstrap} (SASL_SSL {self.sasl_bootstrap}, "
                f"mTLS {self.ssl_bootstrap}; pid {self.pid}, dir {self.run_dir})")
