"""Which key prefix holds what. One place, so the local runtime, the Kubernetes executor, the
init step that downloads artifacts and the garbage collector agree.

    <run id>/                       everything one pipeline run produced
    <run id>/<op path>/             one op's artifacts: what it wrote under $FLOWD_ARTIFACTS
    <run id>/<op path>/.flowd/      flowd's own files of that op (outputs too large to travel inline)
    <run id>/<op path>/.flowd/<n>/  ... of its attempt n: report.json (outputs + what was uploaded)

A retried op writes to the same prefix (its latest attempt's files replace the earlier ones).
Op paths (``train``, ``outer/inner``, ``sweep[3]``) are used as they are.
"""

from __future__ import annotations

from flowd.artifacts.store import check_prefix, join

__all__ = ["op_prefix", "outputs_key", "report_prefix", "run_prefix"]

FLOWD_DIR = ".flowd"


def run_prefix(run_id: str) -> str:
    return check_prefix(run_id)


def op_prefix(run_id: str, path: str) -> str:
    return check_prefix(join(run_id, path))


def outputs_key(run_id: str, path: str) -> str:
    """The prefix of an op's outputs file when it is too large for its report (Kubernetes:
    the 4 KiB termination message)."""
    return join(op_prefix(run_id, path), FLOWD_DIR)


REPORT_FILE = "report.json"


def report_prefix(run_id: str, path: str, attempt: int) -> str:
    """Where attempt ``attempt`` of an op leaves its report (outputs and the names it uploaded)
    when it does not fit a Kubernetes termination message. Per attempt, so a pointer read late
    (by the next owner after a crash) can never name a later attempt's file."""
    return join(outputs_key(run_id, path), str(int(attempt)))
