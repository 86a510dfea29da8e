"""flowd: a container-native flow engine for Polyaxonfile DAGs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("flowd")  # from the installed package's metadata (pyproject.toml)
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
