"""What the per-batch handling marker (poison-record detection) costs on the hot path.

    .venv/bin/python bench/marker_bench.py [--brokers HOST:PORT] [--rounds 2]

Runs daemon_bench's latency scenario (100 chains of 10 ops at 20 chains/s, 3 partitions, instant
executor) alternately with the marker write on and off (off: ``Daemon.mark_handling`` replaced by
a no-op, as before markers existed), and prints the hop latency of each, plus how many batches
waited for a marker write of their own (the others were marked in the previous transaction) and
how long those writes took. Without ``--brokers`` it starts a broker (tests.infra).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import anyio
import daemon_bench

from flowd.daemon.serve import Daemon

_real = Daemon.mark_handling
samples: list[float] = []


async def timed(self: Daemon, partition: int, marker: object) -> None:
    t = time.perf_counter()
    await _real(self, partition, marker)  # type: ignore[arg-type]
    samples.append(time.perf_counter() - t)


async def off(self: Daemon, partition: int, marker: object) -> None:
    return None


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", default=os.environ.get("FLOWD_BROKERS") or os.environ.get("FLOWD_TEST_KAFKA"))
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    from flowd.cli.serve import configure_logging

    configure_logging("warning")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    broker = None
    if not args.brokers:
        from tests.infra.kafka import KafkaBroker

        broker = KafkaBroker(run_dir=Path(tempfile.mkdtemp(prefix="marker-bench-")) / "kafka")
        await broker.start()
        args.brokers = broker.bootstrap
    try:
        for rnd in range(args.rounds):
            for name, fn in (("marker on", timed), ("marker off", off)):
                Daemon.mark_handling = fn  # type: ignore[method-assign]
                samples.clear()
                print(f"--- round {rnd}, {name}", flush=True)
                await daemon_bench.throughput(args.brokers, 100, 10, 3, rate=20.0)
                if samples:
                    ss = sorted(samples)
                    print(f"  batches that waited for their own marker write: {len(ss)}; write p50 "
                          f"{ss[len(ss) // 2] * 1000:.1f} ms, p99 {ss[int(len(ss) * 0.99)] * 1000:.1f} ms", flush=True)
    finally:
        Daemon.mark_handling = _real  # type: ignore[method-assign]
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    anyio.run(main)
