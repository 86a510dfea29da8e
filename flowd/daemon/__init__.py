"""The daemon: ``flowd serve`` over Kafka (docs/daemon.md).

What other layers may import: :class:`Daemon` (flowd.daemon.serve), :class:`DaemonConfig` /
:func:`load_config` (flowd.daemon.config), the wire types (flowd.daemon.wire) and the pure
partition step (flowd.daemon.partition) for ``flowd replay``.
"""

from flowd.daemon.config import DaemonConfig, Topics, load_config

__all__ = ["DaemonConfig", "Topics", "load_config"]
