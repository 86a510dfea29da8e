"""Container paths -> this machine's paths, for ``flowd run``: pure.

A pod mounts its context volumes (``/plx-context/artifacts``, an init step's ``path``) and its
connections' ``mountPath``s at absolute paths. A local process cannot, so ``flowd run`` gives each
such path a folder (in the attempt's directory, or the connection's local source) and rewrites
the path where the op names it: in the command, the args and the env values of the op and of its
init containers. A path is rewritten only as a whole path component prefix: ``/data`` is
rewritten in ``/data`` and ``/data/x`` and ``--in=/data/x``, not in ``/database`` or ``/x/data``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["PathMap"]


class PathMap:
    """Longest prefix wins (``/plx-context/artifacts/repo`` before ``/plx-context/artifacts``)."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.mapping = {k.rstrip("/") or "/": v for k, v in mapping.items()}
        prefixes = sorted(self.mapping, key=len, reverse=True)
        self._re = (re.compile("(?<![\\w.~/-])(" + "|".join(re.escape(p) for p in prefixes) + ")(?=/|$|[^\\w.-])")
                    if prefixes else None)

    def local(self, path: str) -> str:
        """The local path of a container path (unchanged when no prefix maps it)."""
        return self.rewrite(path)

    def rewrite(self, text: str) -> str:
        if self._re is None:
            return text
        return self._re.sub(lambda m: self.mapping[m.group(1)], text)
