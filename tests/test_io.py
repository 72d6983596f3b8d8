"""giftlab.io: atomic outputs keep the permissions a plain write would give (shared filesystems, DVC caches)."""

from __future__ import annotations

import os
import stat

import pytest

from giftlab.io import atomic_dir, current_umask, write_json_atomic, write_text_atomic


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        text = write_text_atomic(tmp_path / "a" / "table.md", "| x |\n")
        data = write_json_atomic(tmp_path / "metrics.json", {"pass@1": 0.5})
    finally:
        os.umask(old)
    for path in (text, data):
        assert stat.S_IMODE(path.stat().st_mode) == mode, (path, oct(path.stat().st_mode))
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_atomic_outputs_reach_the_disk_before_their_name_does(tmp_path, monkeypatch):
    """A node crash right after the rename must not leave an empty file under the final name: the data is synced
    before the rename, and the folder's new entry after it."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                  real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(a), str(b))), real_replace(a, b))[1])
    out = write_text_atomic(tmp_path / "metrics.json", "{}\n")
    tmp = next(e[1] for e in events if e[0] == "replace")
    assert events == [("fsync", tmp), ("replace", tmp, str(out)), ("fsync", str(tmp_path))]

    events.clear()
    with atomic_dir(tmp_path / "model") as folder:
        (folder / "sub").mkdir()
        (folder / "sub" / "weights.bin").write_bytes(b"w")
        (folder / "config.json").write_text("{}")
    staged = str(tmp_path / ".model.tmp")
    synced = [e[1] for e in events if e[0] == "fsync"]
    assert events.index(("replace", staged, str(tmp_path / "model"))) == len(events) - 2, events
    assert set(synced[:-1]) == {f"{staged}/config.json", f"{staged}/sub/weights.bin", f"{staged}/sub", staged}
    assert synced[-1] == str(tmp_path)


def test_a_sync_that_fails_leaves_no_staging_folder(tmp_path, monkeypatch):
    """NFS and Lustre report a write they could not make (quota, full disk, I/O error) at fsync, not at write: the
    failed output goes like any other failure of the block, not a staged copy of it (15 GB per SFT export) left on
    the filesystem that ran out, and the output the run had before stays."""
    import errno

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "old.bin").write_bytes(b"old")

    def full(fd):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="quota"):
        with atomic_dir(tmp_path / "model") as folder:
            (folder / "weights.bin").write_bytes(b"w")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["old.bin"]


def test_a_staged_folder_syncs_its_own_entries_not_what_a_link_points_to(tmp_path, monkeypatch):
    """A symlink in the staged folder to a folder elsewhere (a shared data set, a cache) is an entry of its own
    folder: the target is not this output's to sync, and may not be readable (os.open fails: EACCES)."""
    elsewhere = tmp_path / "shared"
    elsewhere.mkdir()
    synced, real_fsync = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd))[1])
    with atomic_dir(tmp_path / "out" / "model") as folder:
        (folder / "data").symlink_to(elsewhere, target_is_directory=True)
        (folder / "gone").symlink_to(tmp_path / "missing")
        (folder / "config.json").write_text("{}")
    assert str(elsewhere) not in synced, synced
    assert (tmp_path / "out" / "model" / "data").resolve() == elsewhere


def test_a_folder_that_cannot_be_synced_after_the_rename_keeps_the_output(tmp_path, monkeypatch, caplog):
    """The output is in place once renamed: a folder this process cannot open for reading (EACCES) or sync must not
    fail the finished job, only say so."""
    real_open = os.open

    def no_folders(path, flags, *args):
        if os.path.isdir(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_folders)
    out = write_text_atomic(tmp_path / "metrics.json", "{}\n")
    assert out.read_text() == "{}\n"
    assert "could not be synced" in caplog.text
