"""Artifact stores: files that jobs produce and consume, kept by key prefix.

``Store`` is the protocol (put/get/list/delete of a prefix); ``FolderStore`` keeps them in a
directory (``flowd run``), ``S3Store`` in S3-compatible object storage (the cluster);
``open_store`` opens what a ``StoreConfig`` names; :mod:`flowd.artifacts.layout` says which key
holds what (``<run id>/<op path>/...``). Nothing here knows the engine.
"""

from flowd.artifacts.config import ENV, StoreConfig, open_store
from flowd.artifacts.folder import FolderStore
from flowd.artifacts.layout import op_prefix, run_prefix
from flowd.artifacts.store import ArtifactStoreError, ObjectInfo, Store, Transfer

__all__ = ["ENV", "ArtifactStoreError", "FolderStore", "ObjectInfo", "Store", "StoreConfig", "Transfer",
           "op_prefix", "open_store", "run_prefix"]


def __getattr__(name: str) -> object:
    if name == "S3Store":  # the S3 client loads only when asked for
        from flowd.artifacts.s3 import S3Store

        return S3Store
    raise AttributeError(name)
