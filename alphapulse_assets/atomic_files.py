"""Atomic file writes, locally or on any fsspec filesystem: a reader sees the old content or the new, never a part.

Locally a file is written under a hidden temporary name beside its target, flushed and fsynced, then
renamed into place (and the directory fsynced, so the new name survives a crash). An object store has no
rename: a file is uploaded once under its final key, without autocommit, and published by its commit (the
store publishes an object only when its upload completes); a failed writer's upload is discarded.

``atomic_write`` is the whole write. ``stage`` and ``publish`` are its two halves, for a caller that must
do something between them (the model registry stages a model before its database transaction and
publishes it, refusing to replace an existing file, inside it). ``discard`` removes a staged file.
This module does not import Dagster.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Callable
from typing import IO, Any

from alphapulse_assets.recovery.errors import ErrorClass, SystemResourceError, classify

Writer = Callable[[IO[bytes]], Any]
# Filesystems without hard links: publishing without replacing then falls back to check-and-rename.
_NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename itself is still atomic
    finally:
        os.close(fd)


def stage(fs, is_local: bool, target: str, write: Writer) -> str:
    """Write a hidden temporary file beside ``target`` with ``write(fh)``; returns its path.

    Locally the file is flushed and fsynced. On failure nothing is left behind.
    """
    directory = os.path.dirname(target)
    tmp = f"{directory}/.{os.path.basename(target)}.{uuid.uuid4().hex}.tmp"
    try:
        if is_local:
            os.makedirs(directory, exist_ok=True)
            with open(tmp, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
        else:
            fs.makedirs(directory, exist_ok=True)
            # Some filesystems (memory://) commit a half-written file when the writer fails: it lands at
            # the temporary name, never at the target's.
            with fs.open(tmp, "wb") as fh:
                write(fh)
    except BaseException:
        discard(fs, is_local, tmp)
        raise
    return tmp


def publish(fs, is_local: bool, tmp: str, target: str, *, replace: bool = True) -> None:
    """Give the staged file ``tmp`` the name ``target``.

    ``replace=False`` never replaces an existing ``target`` (FileExistsError); locally it hard-links, so
    ``tmp`` is left for ``discard``.
    """
    if is_local:
        if replace:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)  # atomic, and fails if ``target`` exists
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                if os.path.exists(target):
                    raise FileExistsError(target) from None
                os.replace(tmp, target)
        _fsync_dir(os.path.dirname(target))
    else:
        if not replace:
            fs.invalidate_cache(os.path.dirname(target))  # a listing cached earlier may miss another's file
            if fs.exists(target):
                raise FileExistsError(target)
        fs.mv(tmp, target)


def _write_once(fs, target: str, write: Writer) -> None:
    """Upload ``target`` once, published only if ``write`` completes.

    Opened without autocommit, the file publishes nothing when closed: ``commit`` publishes it (S3 completes
    its upload, one request), and a failed ``write`` discards it (S3 aborts the upload), so no reader ever
    sees a part, and a failed rewrite leaves the previous object in place.
    """
    fh = fs.open(target, "wb", autocommit=False)
    try:
        write(fh)
        fh.close()
    except BaseException:
        fh.discard()
        raise
    fh.commit()


def discard(fs, is_local: bool, path: str) -> None:
    """Remove ``path`` if it is there; never raises."""
    try:
        if is_local:
            if os.path.exists(path):
                os.unlink(path)
        elif fs.exists(path):
            fs.rm(path)
    except OSError:
        pass


def atomic_write(fs, is_local: bool, target: str, write: Writer, *, what: str) -> None:
    """Write ``target`` with ``write(fh)`` atomically (``fs`` may be None locally). A full disk is a system error."""
    try:
        if is_local:
            tmp = stage(fs, is_local, target, write)
            try:
                publish(fs, is_local, tmp, target)
            finally:
                discard(fs, is_local, tmp)  # a no-op after the rename
        else:
            fs.makedirs(os.path.dirname(target), exist_ok=True)
            _write_once(fs, target, write)
    except OSError as exc:
        if classify(exc).error_class is ErrorClass.SYSTEM:
            raise SystemResourceError(f"cannot write {what}: {exc}", where=target) from exc
        raise
