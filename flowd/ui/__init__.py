"""The web UI (``flowd ui``): a read-only (unless configured otherwise) view of runs, served by
the standard library's HTTP server from plain HTML/JS/CSS files shipped in ``static/``, over a
backend that reads a local state dir (:mod:`flowd.ui.local`)."""
