"""
Checkpoint history (learning/store.py): accept only improvements, rollback, atomic writes,
and concurrent writers (the learner and `dexmpc rollback`) that never lose each other's
changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dexmpc_ros.core.errors import CheckpointError
from dexmpc_ros.learning.store import HISTORY_FILE, CheckpointStore

REPO = Path(__file__).resolve().parents[1]


def test_accepts_only_improvements_and_survives_reopening(tmp_path):
    store = CheckpointStore(tmp_path / 'store')
    assert store.current() is None and store.next_path().name == 'ckpt-0001'
    first = store.propose(store.next_path(), {'score': 0.5})
    assert first.accepted and first.reason == 'first model'
    worse = store.propose(store.next_path(), {'score': 0.6})
    assert not worse.accepted and 'score 0.6 >= 0.5' in worse.reason
    better = store.propose(store.next_path(), {'score': 0.4, 'steps': 3})
    assert better.accepted and store.current() == better
    reopened = CheckpointStore(tmp_path / 'store')
    assert [e.accepted for e in reopened.entries] == [True, False, True]
    assert reopened.current().path.endswith('ckpt-0003')
    assert reopened.current().metrics == {'score': 0.4, 'steps': 3}


def test_min_improvement_fraction(tmp_path):
    store = CheckpointStore(tmp_path, min_improvement=0.1)
    store.propose(tmp_path / 'a', {'score': 1.0})
    assert not store.propose(tmp_path / 'b', {'score': 0.95}).accepted  # needs < 0.9
    assert store.propose(tmp_path / 'c', {'score': 0.85}).accepted


def test_rollback_returns_to_the_previous_accepted_model(tmp_path):
    store = CheckpointStore(tmp_path)
    store.propose(tmp_path / 'a', {'score': 1.0})
    with pytest.raises(CheckpointError, match='only accepted model'):
        store.rollback()
    assert store.current().path.endswith('a')  # a refused rollback changes nothing
    store.propose(tmp_path / 'b', {'score': 2.0})  # refused
    store.propose(tmp_path / 'c', {'score': 0.5})
    back = store.rollback('regressed on the robot')
    assert back.path.endswith('a')
    assert CheckpointStore(tmp_path).current().path.endswith('a')
    rolled = CheckpointStore(tmp_path).entries[2]
    assert rolled.rolled_back and rolled.reason == 'regressed on the robot'
    # after a rollback a new proposal competes with the model in use
    assert store.propose(tmp_path / 'd', {'score': 0.9}).accepted


@pytest.mark.parametrize('metrics', [{}, {'score': float('nan')}, {'score': float('inf')},
                                     {'score': 'low'}])
def test_proposal_needs_a_finite_score(tmp_path, metrics):
    with pytest.raises(ValueError, match='score'):
        CheckpointStore(tmp_path).propose(tmp_path / 'a', metrics)


def test_corrupt_history_is_reported_not_ignored(tmp_path):
    (tmp_path / HISTORY_FILE).write_text('{"version": 1, "entries": [{"path": 3')
    with pytest.raises(CheckpointError, match='unreadable checkpoint history'):
        CheckpointStore(tmp_path)
    (tmp_path / HISTORY_FILE).write_text(json.dumps({'version': 99, 'entries': []}))
    with pytest.raises(CheckpointError, match='unknown version 99'):
        CheckpointStore(tmp_path)


def test_a_crash_while_writing_keeps_the_old_history(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path)
    store.propose(tmp_path / 'a', {'score': 1.0})
    before = (tmp_path / HISTORY_FILE).read_text()

    def crash(*args, **kwargs):
        raise OSError('disk full')

    monkeypatch.setattr(json, 'dump', crash)
    with pytest.raises(OSError, match='disk full'):
        store.propose(tmp_path / 'b', {'score': 0.5})
    assert (tmp_path / HISTORY_FILE).read_text() == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith('.tmp')]


def test_cli_rollback_and_models(tmp_path, capsys):
    from dexmpc_ros.runtime.cli import main

    store = CheckpointStore(tmp_path)
    store.propose(tmp_path / 'ckpt-0001', {'score': 1.0})
    assert main(['rollback', str(tmp_path)]) == 2  # only one model
    assert 'nothing to roll back to' in capsys.readouterr().err
    store.propose(tmp_path / 'ckpt-0002', {'score': 0.5})
    assert main(['rollback', str(tmp_path), '--reason', 'slipped']) == 0
    assert capsys.readouterr().out.strip() == (
        f'rolled back ckpt-0002; current model: {tmp_path / "ckpt-0001"}')
    assert main(['models', str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ['* ckpt-0001  score 1  accepted: first model',
                     '  ckpt-0002  score 0.5  rolled back: slipped']


def test_a_rollback_between_two_trainings_is_kept(tmp_path):
    """The learner's store object outlives a `dexmpc rollback` made with another one."""
    learner = CheckpointStore(tmp_path)
    learner.propose(tmp_path / 'ckpt-0001', {'score': 1.0})
    learner.propose(tmp_path / 'ckpt-0002', {'score': 0.5})
    CheckpointStore(tmp_path).rollback('operator: ckpt-0002 regressed')
    assert learner.current().path.endswith('ckpt-0001')   # the learner sees the rollback
    assert learner.next_path().name == 'ckpt-0003'
    # compared with the model in use (1.0), not with the rolled-back one (0.5)
    assert learner.propose(tmp_path / 'ckpt-0003', {'score': 0.8}).accepted
    history = CheckpointStore(tmp_path).entries
    assert [(e.accepted, e.rolled_back) for e in history] == \
        [(True, False), (True, True), (True, False)]
    assert history[1].reason == 'operator: ckpt-0002 regressed'


def test_a_baseline_measured_for_a_model_rolled_back_meanwhile_is_not_used(tmp_path):
    store = CheckpointStore(tmp_path)
    store.propose(tmp_path / 'a', {'score': 1.0})
    store.propose(tmp_path / 'b', {'score': 0.5})
    # a training measured b at 0.3 on its held-out data; then b was rolled back
    CheckpointStore(tmp_path).rollback()
    entry = store.propose(tmp_path / 'c', {'score': 0.4}, baseline=0.3,
                          baseline_path=tmp_path / 'b')
    assert entry.accepted and '(current a: 1' in entry.reason
    assert 'same data' not in entry.reason
    same = store.propose(tmp_path / 'd', {'score': 0.35}, baseline=0.3,
                         baseline_path=tmp_path / 'c')
    assert not same.accepted and 'on the same data' in same.reason


def test_next_path_skips_a_checkpoint_saved_but_not_proposed_yet(tmp_path):
    store = CheckpointStore(tmp_path)
    store.propose(tmp_path / 'ckpt-0001', {'score': 1.0})
    (tmp_path / 'ckpt-0002').mkdir()      # another process's training, saving now
    assert store.next_path().name == 'ckpt-0003'


WRITER = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from dexmpc_ros.core.errors import CheckpointError
    from dexmpc_ros.learning.store import CheckpointStore
    root, name, count, go = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    store = CheckpointStore(root)
    while not go.exists():
        time.sleep(0.001)
    done = 0
    for i in range(count):
        if name == 'rollback':
            try:
                store.rollback(f'rollback {i}')
                done += 1
            except CheckpointError:
                pass
        else:
            store.propose(root / f'{name}-{i}', {'score': 1.0 / (i + 2)})
    print(done)
''')


def test_concurrent_processes_lose_no_proposal_and_no_rollback(tmp_path):
    """Three proposing processes and one rolling back, started together on one store."""
    root, go = tmp_path / 'store', tmp_path / 'go'
    seeded = CheckpointStore(root)
    seeded.propose(root / 'seed0', {'score': 1.0})
    seeded.propose(root / 'seed1', {'score': 0.9})   # so that the first rollback succeeds
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO), os.environ.get('PYTHONPATH')])))
    jobs = [('p0', 15), ('p1', 15), ('p2', 15), ('rollback', 15)]
    procs = [subprocess.Popen([sys.executable, '-c', WRITER, str(root), name, str(count),
                               str(go)], env=env, stdout=subprocess.PIPE, text=True)
             for name, count in jobs]
    time.sleep(0.5)   # let them import; they all start writing when `go` appears
    go.touch()
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    rollbacks = int(outputs[-1])
    assert rollbacks >= 1
    entries = CheckpointStore(root).entries
    names = sorted(Path(e.path).name for e in entries)
    assert names == sorted(['seed0', 'seed1'] + [f'p{k}-{i}' for k in range(3) for i in range(15)])
    assert sum(e.rolled_back for e in entries) == rollbacks
