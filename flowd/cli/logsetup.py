"""Where every command's logs go: structlog (and stdlib logging) to **stderr**, always.

stdout belongs to what a command prints for its user -- with ``--output json`` exactly one JSON
document -- so no log line may land there. structlog's default logger prints to stdout, and an
adapter that logs (the Kubernetes watch's ``watch_failed``, the daemon's Kafka client) would mix
its warnings into the report. :func:`flowd.cli.main` configures this before any command runs;
``flowd serve`` calls it again with its ``--log-level``.
"""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["configure_logging"]


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written: pytest's capture and a user's
    redirection replace (and close) the stream that was current when logging was configured."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "info", *, cache: bool = False, json_stdlib: bool = False) -> None:
    """``cache``: bind loggers on first use (the daemon's hot paths); off for short commands, so a
    second configuration in the same process (tests calling ``main`` twice) still applies.
    ``json_stdlib`` (the daemon): the libraries' stdlib log records (aiokafka's) become JSON
    lines like flowd's own, with their logger's name, so a log pipeline parses every line."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    if json_stdlib:
        handler = logging.StreamHandler(_CurrentStderr())
        handler.setFormatter(structlog.stdlib.ProcessorFormatter(
            processor=structlog.processors.JSONRenderer(),
            foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.processors.add_log_level,
                               structlog.processors.TimeStamper(fmt="iso", utc=True),
                               structlog.processors.format_exc_info]))
        logging.getLogger().handlers[:] = [handler]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        # a factory, not a logger bound to the stream of today: pytest's capture and a user's
        # redirection replace sys.stderr after import
        logger_factory=structlog.PrintLoggerFactory(_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=cache,
    )
