"""Checkpoint history (learning/store.py): accept only improvements, rollback, atomic writes."""

from __future__ import annotations

import json

import pytest

from dexmpc_ros.core.errors import CheckpointError
from dexmpc_ros.learning.store import HISTORY_FILE, CheckpointStore


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
    assert [p.name for p in tmp_path.iterdir()] == [HISTORY_FILE]  # no temp file left


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
