"""Init steps (Polyaxon's ``init`` section): what prepares an op's files before its process.

- :mod:`flowd.initsteps.plan`: ``run.init`` -> steps and context volumes (pure)
- :mod:`flowd.initsteps.runner`: one step carried out (git, file, dockerfile, artifacts, container)
- :mod:`flowd.initsteps.paths`: container paths -> this machine's folders (``flowd run``)
- ``python -m flowd.initsteps``: the entry of the flowd image's init containers and of
  ``flowd run``'s wrapper process

Kept light on imports: it starts once per init container and per local attempt with init steps.
"""
