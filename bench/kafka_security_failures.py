"""How fast `flowd status` fails against a secured broker: wrong password, untrusted CA, no ACLs.

Starts the SASL_SSL test broker of tests/infra/kafka_secure.py (needs the Kafka jars and java, as
the integration tests do), runs each failing command 3 times and prints rc, seconds and the start
of the one stderr line, then a bare `flowd status --help` for comparison (interpreter start-up).

    .venv/bin/python bench/kafka_security_failures.py
"""
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
TMP = Path(tempfile.mkdtemp(prefix='flowd-sec-bench-'))
from tests.infra.kafka_secure import SecureKafkaBroker


async def main():
    b = SecureKafkaBroker(run_dir=TMP / 'kafka')
    await b.start()
    print(f"secure broker ready in {b.start_seconds:.1f}s")
    try:
        pki = b.pki
        pw = b.password_file("producer", TMP)
        base = [sys.executable, "-m", "flowd", "status", "some-run", "--brokers", b.sasl_bootstrap, "--security-protocol", "SASL_SSL",
                "--sasl-mechanism", "SCRAM-SHA-512"]
        cases = {
          "wrong password": base + ["--ssl-cafile", str(pki.ca), "--sasl-username", "producer"],
          "untrusted CA": base + ["--ssl-cafile", str(pki.rogue_ca), "--sasl-username", "producer", "--sasl-password-file", str(pw)],
          "no ACLs": base + ["--ssl-cafile", str(pki.ca), "--sasl-username", "nobody", "--sasl-password-file", str(b.password_file("nobody", TMP))],
        }
        env = {**os.environ, "FLOWD_SASL_PASSWORD": "wrong"}
        for name, argv in cases.items():
            for _ in range(3):
                t = time.monotonic()
                r = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
                dt = time.monotonic() - t
                print(f"{name}: rc={r.returncode} {dt:.2f}s :: {r.stderr.strip()[:160]}")
        t = time.monotonic()
        subprocess.run([sys.executable, "-m", "flowd", "status", "--help"], capture_output=True,
                       check=False)
        print(f"interpreter+import baseline (flowd status --help): {time.monotonic() - t:.2f}s")
    finally:
        b.stop()
asyncio.run(main())
