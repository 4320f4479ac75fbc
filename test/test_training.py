"""Offline training from bags (models/training.py, `dexmpc train`): a real hand-twin bag."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_transitions import TwinRecording

from dexmpc_ros.core.errors import BagError
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.models.checkpoint import load_checkpoint
from dexmpc_ros.models.store import CheckpointStore
from dexmpc_ros.models.training import TrainConfig, train_from_bags
from dexmpc_ros.runtime.cli import main

SMALL = dict(ensemble_size=2, hidden=(32,), horizon=3, holdout=0.34, seed=0, threads=1)


@pytest.fixture(scope='module')
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp('bags') / 'hand'
    spec = load_robot_spec('hand24')
    TwinRecording(path, spec, sim_time=False, seed=5).run(
        steps=60, episode_steps=10, reset_at=-1, skip=set())
    return path


def test_train_validate_accept_then_refuse_a_worse_model(bag, tmp_path):
    spec = load_robot_spec('hand24')
    store = CheckpointStore(tmp_path / 'store')
    epochs = []
    first = train_from_bags([bag], spec, store, TrainConfig(epochs=30, **SMALL),
                            on_epoch=lambda e, loss: epochs.append(loss))
    assert first.entry.accepted and store.current().path == str(first.checkpoint)
    assert len(epochs) == 30 and epochs[-1] < epochs[0]
    assert first.plot is not None and first.plot.stat().st_size > 1000
    metrics = first.metrics
    assert metrics['horizon'] == 3 and metrics['windows'] > 0 and metrics['score'] > 0
    model, manifest = load_checkpoint(first.checkpoint, expect_robot='hand24')
    assert manifest['source_bags'] == [str(bag.absolute())]
    assert manifest['metrics']['score'] == metrics['score']
    assert manifest['extra']['train_config']['hidden'] == [32]

    # an untrained model is worse on the same held-out episodes: refused, not swapped in
    worse = train_from_bags([bag], spec, store, TrainConfig(epochs=0, **SMALL))
    assert not worse.entry.accepted
    assert worse.metrics['current_score'] == pytest.approx(metrics['score'], rel=1e-6)
    assert 'on the same data' in worse.entry.reason
    assert store.current().path == str(first.checkpoint)
    assert worse.checkpoint.is_dir()  # kept for the record, not in use


def test_cli_train_and_errors(bag, tmp_path, capsys):
    store = tmp_path / 'store'
    code = main(['train', str(bag), '--robot', 'hand24', '--store', str(store), '--epochs',
                 '3', '--ensemble', '2', '--hidden', '16', '--horizon', '2', '--holdout',
                 '0.34', '--quiet'])
    assert code == 0
    out = capsys.readouterr().out
    assert 'ACCEPTED, now current: first model' in out and 'held-out 2-step error' in out
    history = json.loads((store / 'history.json').read_text())
    assert len(history['entries']) == 1
    assert main(['train', str(tmp_path / 'no_bag'), '--robot', 'hand24', '--store',
                 str(store), '--quiet']) == 2
    assert 'no_bag' in capsys.readouterr().err


@pytest.fixture(scope='module')
def one_episode(tmp_path_factory):
    """A bag of one episode (as a short `dexmpc up` records): nothing to hold out."""
    path = tmp_path_factory.mktemp('bags') / 'one'
    TwinRecording(path, load_robot_spec('hand24'), sim_time=False, seed=1).run(
        steps=8, episode_steps=100, reset_at=-1, skip=set())
    return path


def test_one_episode_cannot_be_validated(one_episode, tmp_path):
    spec = load_robot_spec('hand24')
    with pytest.raises(BagError, match='record longer: 1 episode'):
        train_from_bags([one_episode], spec, CheckpointStore(tmp_path / 's'),
                        TrainConfig(epochs=1, **SMALL))


def test_cli_train_on_one_episode_says_record_longer_not_a_traceback(one_episode, tmp_path):
    store = tmp_path / 'store'
    result = subprocess.run(
        [sys.executable, '-m', 'dexmpc_ros.runtime.cli', 'train', str(one_episode),
         '--robot', 'hand24', '--store', str(store), '--epochs', '1', '--quiet'],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        'dexmpc: error: record longer: 1 episode(s) with transitions in 1 bag(s), need '
        'at least 2 (one to train, one held out)']
    assert not store.exists()   # a failed first training leaves no empty store behind


@pytest.mark.parametrize('flags, says', [
    (['--holdout', '1.5'], '--holdout must be in (0, 1), got 1.5'),
    (['--hidden', '0'], '--hidden widths must be integers >= 1'),
    (['--epochs', '-1'], '--epochs must be an integer >= 0, got -1'),
    (['--ensemble', '0'], '--ensemble must be an integer >= 1, got 0'),
    (['--horizon', '0'], '--horizon must be an int >= 1, got 0'),
    (['--robot', 'nobot'], "unknown robot 'nobot'"),
])
def test_cli_train_bad_flags_exit_2_naming_the_flag(bag, tmp_path, capsys, flags, says):
    args = ['train', str(bag), '--robot', 'hand24', '--store', str(tmp_path / 's'),
            '--quiet', *flags]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.splitlines()) == 1, err


def test_cli_train_into_a_file_is_a_user_error(bag, tmp_path, capsys):
    (tmp_path / 'file').write_text('')
    assert main(['train', str(bag), '--robot', 'hand24', '--store', str(tmp_path / 'file'),
                 '--quiet']) == 2
    err = capsys.readouterr().err
    assert 'cannot be used as a checkpoint store' in err and len(err.splitlines()) == 1
