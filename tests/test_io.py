"""giftlab.io: atomic outputs keep the permissions a plain write would give (shared filesystems, DVC caches)."""

from __future__ import annotations

import os
import stat

import pytest

from giftlab.io import current_umask, write_json_atomic, write_text_atomic


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
