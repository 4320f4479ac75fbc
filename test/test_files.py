"""
Crash-safe file writing (core/files.py): atomic replacement with the ordinary file mode,
and the checkpoint directory (learning/checkpoint.py) likewise readable by others.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from dexmpc_ros.core import files
from dexmpc_ros.core.files import default_mode, umask, write_text_atomic


@pytest.fixture
def set_umask():
    """Set the process umask for one test, restored afterwards."""
    before = os.umask(0o022)
    os.umask(before)
    yield os.umask
    os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize('mask, expected', [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600),
                                            (0o002, 0o664)])
def test_atomic_write_gets_the_mode_open_would_give(tmp_path, set_umask, mask, expected):
    set_umask(mask)
    target = tmp_path / 'metadata.yaml'
    target.write_text('old')
    target.chmod(0o600)   # a file an older version left private: the rewrite fixes it
    write_text_atomic(target, lambda f: f.write('new'))
    assert target.read_text() == 'new'
    assert mode(target) == expected
    assert [p.name for p in tmp_path.iterdir()] == ['metadata.yaml']   # no temp file left
    fresh = tmp_path / 'fresh.json'
    write_text_atomic(fresh, lambda f: f.write('{}'), fsync=False)
    assert mode(fresh) == expected


def test_umask_is_read_without_changing_it(set_umask, monkeypatch):
    set_umask(0o027)
    assert umask() == 0o027
    assert default_mode() == 0o640 and default_mode(directory=True) == 0o750

    # without /proc: the set-and-restore fallback gives the same and leaves it in place
    def no_proc(*args, **kwargs):
        raise FileNotFoundError('/proc/self/status')
    monkeypatch.setattr(files, 'open', no_proc, raising=False)
    assert umask() == 0o027
    assert os.umask(0o027) == 0o027


def test_a_failed_write_leaves_the_target_and_no_temp_file(tmp_path):
    target = tmp_path / 'history.json'
    target.write_text('kept')

    def fail(f):
        f.write('half')
        raise RuntimeError('disk full')
    with pytest.raises(RuntimeError, match='disk full'):
        write_text_atomic(target, fail)
    assert target.read_text() == 'kept'
    assert [p.name for p in tmp_path.iterdir()] == ['history.json']


def test_checkpoint_directory_and_files_get_ordinary_modes(tmp_path, set_umask):
    torch = pytest.importorskip('torch')
    from dexmpc_ros.learning.checkpoint import MANIFEST_FILE, WEIGHTS_FILE, save_checkpoint
    from dexmpc_ros.learning.dynamics.model import DeltaDynamics
    from dexmpc_ros.learning.dynamics.config import DynamicsConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # the 2 cores are shared
    try:
        rng = np.random.default_rng(0)
        s, a = rng.standard_normal((20, 2)), rng.uniform(-1.0, 1.0, (20, 1))
        model = DeltaDynamics(2, 1, DynamicsConfig(ensemble_size=1, hidden=(4,)))
        model.fit(s, a, s + a, epochs=0)
        set_umask(0o027)
        ckpt = save_checkpoint(tmp_path / 'ckpt', model, {
            'state_names': ['x', 'y'], 'action_names': ['u'], 'robot': 'toy'})
    finally:
        torch.set_num_threads(threads)
    assert mode(ckpt) == 0o750
    assert mode(ckpt / MANIFEST_FILE) == 0o640 and mode(ckpt / WEIGHTS_FILE) == 0o640
