"""The filesystem behind a store URL (a folder or an fsspec URL), opened the same way by every reader and writer.

Candles, training sets and model artifacts each live under a URL from the settings (``settings.store_url``).
``open_store`` turns one into an fsspec filesystem with the options the settings give it: for ``s3://`` the
endpoint of an S3-compatible server (ALPHAPULSE_STORE__ENDPOINT_URL). Credentials are never passed here:
s3fs reads them from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE, a role) as
botocore does, and they appear in no log or error.

Object stores' filesystems cache directory listings for the life of the process, and fsspec reuses one
filesystem object per URL and options: a long-lived process (the daemon, a sensor, the web UI) would not see
files another machine wrote since. ``list_names`` therefore always asks the store, and readers call
``forget_listing`` before opening a file another process may have written. This module does not
import Dagster.
"""

from __future__ import annotations

from typing import Any

import fsspec
from fsspec.utils import get_protocol

from alphapulse_assets.settings import get_settings

S3_PROTOCOLS = ("s3", "s3a")


def storage_options(url: str, endpoint_url: str | None = None) -> dict[str, Any]:
    """fsspec options for ``url``: the settings' S3 endpoint for ``s3://`` URLs, nothing otherwise."""
    if get_protocol(str(url)) not in S3_PROTOCOLS:
        return {}
    if endpoint_url is None:
        endpoint_url = get_settings().store.endpoint_url
    return {"endpoint_url": endpoint_url} if endpoint_url else {}


def open_store(url: str) -> tuple[Any, str, bool]:
    """``(filesystem, root path inside it, is_local)`` for a store URL."""
    fs, path = fsspec.core.url_to_fs(str(url), **storage_options(str(url)))
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return fs, path.rstrip("/"), "file" in protocols or "local" in protocols


def forget_listing(fs: Any, path: str) -> None:
    """Drop what ``fs`` remembers of ``path``'s folder, so opening ``path`` asks the store whether it exists."""
    fs.invalidate_cache(path.rstrip("/").rsplit("/", 1)[0])


def list_names(fs: Any, directory: str) -> list[str]:
    """The names in ``directory`` as the store holds them now (never a cached listing); FileNotFoundError
    if there is no such directory."""
    fs.invalidate_cache(directory)
    return [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(directory, detail=False)]
