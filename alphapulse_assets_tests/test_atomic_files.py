"""The one atomic-write helper (``alphapulse_assets/atomic_files.py``), locally and on an fsspec filesystem."""

from __future__ import annotations

import fsspec
import pytest

from alphapulse_assets import atomic_files


def test_failed_write_keeps_the_old_content_and_leaves_nothing(tmp_path):
    target = tmp_path / "out" / "report.json"
    atomic_files.atomic_write(None, True, str(target), lambda fh: fh.write(b"old"), what="a report")

    def half_then_fail(fh):
        fh.write(b"new, half")
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError, match="writer died"):
        atomic_files.atomic_write(None, True, str(target), half_then_fail, what="a report")
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]


@pytest.mark.parametrize("local", [True, False])
def test_publish_without_replace_refuses_an_existing_file(tmp_path, local):
    fs = fsspec.filesystem("file" if local else "memory")
    root = str(tmp_path) if local else f"/atomic-{tmp_path.name}"
    target = f"{root}/m/v0001.bin"
    first = atomic_files.stage(fs, local, target, lambda fh: fh.write(b"one"))
    atomic_files.publish(fs, local, first, target, replace=False)
    second = atomic_files.stage(fs, local, target, lambda fh: fh.write(b"two"))
    with pytest.raises(FileExistsError):
        atomic_files.publish(fs, local, second, target, replace=False)
    for tmp in (first, second):
        atomic_files.discard(fs, local, tmp)
    with fs.open(target, "rb") as fh:
        assert fh.read() == b"one"
    assert fs.ls(f"{root}/m", detail=False) == [target]  # no staged file left
