"""Where a thread's CPU goes, sampled in-process (no dependency, little overhead).

cProfile's per-call hooks triple the cost of flowd's many small Python calls and so inflate
them against C code (TLS, msgspec, the selector); this samples instead: every ``interval`` a
helper thread reads the main thread's stack (``sys._current_frames``). Samples that find the
loop waiting in the selector are idle; the main thread's CPU time (its own CPU clock) is shared
among functions by their share of the busy samples. (Charging each sample the CPU used since the
previous one is biased on a loaded machine: the sampler runs late, often once the loop is back in
the selector, which then gets the work done before it.) The figures are statistical: run enough pods.

    with CpuSampler() as s:
        ...
    print(s.report())
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter

__all__ = ["CpuSampler"]

# the event loop waiting for sockets: no CPU used there
IDLE = "(select)"


class CpuSampler:
    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.main = threading.main_thread().ident
        assert self.main is not None
        self.clock = time.pthread_getcpuclockid(self.main)
        self.self_n: Counter[str] = Counter()  # busy samples by the innermost frame's function
        self.cum_n: Counter[str] = Counter()  # busy samples by every function on the stack (once each)
        self.busy = self.idle = 0
        self.total = 0.0  # the main thread's CPU seconds while sampling
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> CpuSampler:
        """Start (again: the counts add up over several windows)."""
        # the main thread hands the GIL over only at a switch (default every 5 ms) or when it
        # blocks in C (a socket, TLS, select): a sample would land on those points and be charged
        # the Python work done before them. A tiny switch interval lets it land anywhere.
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        sys.setswitchinterval(self._switch)

    def _run(self) -> None:
        start = time.clock_gettime(self.clock)
        try:
            while not self._stop.is_set():
                time.sleep(self.interval)
                frame = sys._current_frames().get(self.main)
                if frame is None:
                    continue
                stack = []
                while frame is not None:
                    code = frame.f_code
                    stack.append(f"{_short(code.co_filename)}:{code.co_firstlineno}({code.co_name})")
                    frame = frame.f_back
                if stack[0].endswith(IDLE):
                    self.idle += 1
                    continue
                self.busy += 1
                self.self_n[stack[0]] += 1
                for name in set(stack):
                    self.cum_n[name] += 1
        finally:
            self.total += time.clock_gettime(self.clock) - start

    def report(self, top: int = 25, per: int = 1, only: str = "") -> str:
        """The top functions by own and by cumulative CPU; ``per``: divide by it (e.g. pods,
        for microseconds per pod). A function's CPU is its share of the busy samples times the
        main thread's CPU time."""
        lines = [f"main thread CPU: {self.total:.3f} s ({self.total / per * 1e6:.0f} us per unit); "
                 f"{self.busy} busy samples, {self.idle} idle (in the selector)"]
        each = self.total / max(1, self.busy) / per * 1e6
        for title, counter in (("self", self.self_n), ("cumulative", self.cum_n)):
            lines.append(f"  top {top} by {title} CPU (us per unit, share of busy samples):")
            for name, n in [(k, v) for k, v in counter.most_common() if only in k][:top]:
                lines.append(f"    {n * each:8.1f}  {n / max(1, self.busy):6.1%}  {name}")
        return "\n".join(lines)


    def dump(self, path: str) -> None:
        """The raw counts as JSON (for a closer look: ``json.load`` and filter by file)."""
        with open(path, "w") as f:
            json.dump({"total": self.total, "busy": self.busy, "idle": self.idle,
                       "self": dict(self.self_n), "cum": dict(self.cum_n)}, f)


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3", "/flowd/", "/bench/", "/tests/"):
        i = path.find(marker)
        if i >= 0:
            return path[i + 1:] if marker.startswith("/") else path[i + len(marker):]
    return path
