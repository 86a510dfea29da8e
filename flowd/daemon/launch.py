"""The files of one local attempt, and what each combination of them proves.

The daemon's local executor starts a process in several steps (claim, spawn, record the pid,
report, reap, record the result, report it) and can be killed between any two. The next owner
of the partition re-issues the ``StartOp`` and must tell, from the attempt directory alone,
whether the op never started (start it), runs (adopt it), ended (report how) or vanished
(``Lost``). So the process records *itself*, through a ``sh`` shim that does not need the
daemon to survive, and every record is made atomically (write a temporary file, then
``link``/``rename`` it into place; ``link`` fails if the name exists, which makes it a
compare-and-set).

Files of ``attempts/<op>@<n>/`` (``g`` = launch generation 1, 2, ...)::

    launch.<g>     the daemon's claim of launch g (content: the attempt key). Created with
                   link(2) -- exclusive: of two owners racing to (re)launch, one wins.
    started.<g>    "<pid> <start time>": written by launch g's shim *before* it runs the op
                   command; or "void": written by a later owner that found launch g claimed but
                   not started. Exclusive too: shim and owner race for it, and the loser
                   knows. A shim that loses exits 75 without running anything.
    exit_code      the op command's exit status, written by the shim after the command
                   (rename). Only a shim that won ``started.<g>`` runs a command, and a
                   relaunch happens only after ``started.<g>`` is void, so one per attempt.
    outputs.json   $FLOWD_OUTPUTS, written by the op
    pid.json, result.json, stdout.log, stderr.log   the LocalExecutor's (flowd.runtime.executor)

What the next owner concludes (:func:`inspect`), first match wins::

    no launch.*                         FRESH      claim launch.1, spawn
    result.json (not a voided shim's)   RESULT     report it again (the engine dedupes)
    exit_code                           EXITED     report exit code + outputs.json
    started.<g> = void                  UNSTARTED  provably never ran: claim launch.<g+1>, spawn
    no started.<g>                      -> write "void" into started.<g>; won: UNSTARTED;
                                           lost (the shim just started): look again
    started.<g> = pid, same start time  RUNNING    adopt: poll until exit_code appears
    started.<g> = pid, gone, no exit    VANISHED   ``Lost`` (killed by a signal, machine reset)

A start time that differs from the recorded one is another process with a reused pid:
VANISHED, not RUNNING. Directories written by an older flowd (``claimed`` + ``pid.json``, no
``launch.*``) are judged by ``pid.json`` as before (LEGACY_*).

Every step of the daemon's start sequence has a fault-injection point
(:func:`flowd.faults.crash_point`, tests only): ``local.claimed`` (claim written, nothing
spawned), ``local.spawned`` (process spawned, ``pid.json`` not written), ``local.pid_recorded``
(``pid.json`` written, ``running`` not reported), ``local.exited`` (reaped, no ``result.json``),
``local.result_recorded`` (``result.json`` written, not reported), ``local.voided`` (an adopter
voided a launch, not relaunched yet).
"""

from __future__ import annotations

import enum
import json
import os
from dataclasses import dataclass
from pathlib import Path

from flowd.runtime.processes import start_time

__all__ = ["SHIM", "VOID_EXIT", "Found", "Judgement", "claim", "current_launch", "inspect", "is_void", "recorded_result"]

VOID_EXIT = 75  # EX_TEMPFAIL: this launch was voided by another owner before it started

# sh -c SHIM flowd-attempt <g> <argv...>   (env: FLOWD_ATTEMPT_DIR)
# Records "<pid> <start time>" into started.<g> exclusively (ln fails if it exists: voided, or a
# duplicate shim), runs the command, records its exit status atomically, exits with it.
# FLOWD_TEST_SHIM_DELAY (tests only) delays the shim so an owner can race it.
SHIM = (
    'd=$FLOWD_ATTEMPT_DIR; g=$1; shift; '
    '[ -n "$FLOWD_TEST_SHIM_DELAY" ] && sleep "$FLOWD_TEST_SHIM_DELAY"; '
    'st=$(cut -d" " -f22 /proc/$$/stat 2>/dev/null); '
    't="$d/.started.$g.$$"; printf "%s %s\\n" "$$" "$st" > "$t" || exit 75; '
    'if ! ln "$t" "$d/started.$g" 2>/dev/null; then rm -f "$t"; exit 75; fi; rm -f "$t"; '
    '"$@"; rc=$?; '
    'printf %s "$rc" > "$d/exit_code.tmp" && mv -f "$d/exit_code.tmp" "$d/exit_code"; exit $rc'
)


class Found(enum.Enum):
    FRESH = "fresh"
    RESULT = "result"
    EXITED = "exited"
    UNSTARTED = "unstarted"
    RUNNING = "running"
    VANISHED = "vanished"


@dataclass(frozen=True)
class Judgement:
    found: Found
    launch: int = 0  # the current launch generation (0: none)
    pid: int | None = None  # RUNNING: the process group to watch or stop


def _link_exclusive(path: Path, content: str) -> bool:
    """Create ``path`` with ``content`` atomically; False if it already exists."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def current_launch(directory: Path) -> int:
    """The highest launch generation claimed in ``directory`` (0: none)."""
    best = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        if name.startswith("launch."):
            try:
                best = max(best, int(name[7:]))
            except ValueError:
                continue
    return best


def claim(directory: Path, key: str, launch: int) -> bool:
    """Claim launch ``launch`` of the attempt; False if another owner claimed it first."""
    directory.mkdir(parents=True, exist_ok=True)
    return _link_exclusive(directory / f"launch.{launch}", key)


def is_void(directory: Path, launch: int) -> bool:
    try:
        return (directory / f"started.{launch}").read_text().strip() == "void"
    except OSError:
        return False


def _alive(pid: int, recorded_start: str | None) -> bool:
    now = start_time(pid)
    if now is None:
        return False
    if recorded_start and now != recorded_start:
        return False  # another process got the pid
    try:  # a zombie (exited, not reaped) has a start time too
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _legacy(directory: Path) -> Judgement:
    try:
        record = json.loads((directory / "pid.json").read_text())
        pid = int(record["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return Judgement(Found.VANISHED)
    if _alive(pid, record.get("start_time")):
        return Judgement(Found.RUNNING, pid=pid)
    return Judgement(Found.VANISHED)


def recorded_result(directory: Path) -> bytes | None:
    """``result.json``, unless it is the report of a voided launch's shim (exit 75, nothing ran):
    a daemon that was presumed dead may write that after another owner relaunched the attempt.
    A command that really exits 75 is still reported, from the ``exit_code`` its shim wrote."""
    try:
        data = (directory / "result.json").read_bytes()
        record = json.loads(data)
    except (OSError, ValueError):
        return None
    if isinstance(record, dict) and record.get("exit_code") == VOID_EXIT:
        return None
    return data


def inspect(directory: Path, *, void: bool = True) -> Judgement:
    """What the files of an attempt prove (see the module doc). With ``void``, a claimed but
    unstarted launch is voided so that it can never start (that makes UNSTARTED a proof)."""
    launch = current_launch(directory)
    if launch == 0 and not (directory / "claimed").exists():
        return Judgement(Found.FRESH)
    if recorded_result(directory) is not None:
        return Judgement(Found.RESULT, launch)
    if (directory / "exit_code").exists():
        return Judgement(Found.EXITED, launch)
    if launch == 0:
        return _legacy(directory)
    started = directory / f"started.{launch}"
    for _ in range(2):
        try:
            text = started.read_text().strip()
        except FileNotFoundError:
            if not void:
                return Judgement(Found.RUNNING, launch)  # may start any moment: not provable yet
            if _link_exclusive(started, "void\n"):
                from flowd.faults import crash_point

                crash_point("local.voided", str(directory))
                return Judgement(Found.UNSTARTED, launch)
            continue  # the shim won the race just now: read what it wrote
        if text == "void":
            return Judgement(Found.UNSTARTED, launch)
        pid_text, _, start = text.partition(" ")
        try:
            pid = int(pid_text)
        except ValueError:
            return Judgement(Found.VANISHED, launch)
        if _alive(pid, start or None):
            return Judgement(Found.RUNNING, launch, pid=pid)
        # it may have recorded its exit as it went away
        if (directory / "exit_code").exists():
            return Judgement(Found.EXITED, launch)
        return Judgement(Found.VANISHED, launch, pid=pid)
    return Judgement(Found.VANISHED, launch)
