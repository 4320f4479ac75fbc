"""Offline training from bags (learning/dynamics/training.py, `dexmpc train`): a hand-twin bag."""

from __future__ import annotations

import json

import pytest
from test_transitions import TwinRecording

from dexmpc_ros.core.errors import BagError
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.learning.checkpoint import load_checkpoint
from dexmpc_ros.learning.dynamics.config import DynamicsConfig
from dexmpc_ros.learning.store import CheckpointStore
from dexmpc_ros.learning.dynamics.training import TrainConfig, train_from_bags
from dexmpc_ros.runtime.cli import main


def small(epochs: int) -> TrainConfig:
    """A quick training: 2 members of 32 units, 3-step validation on a third held out."""
    return TrainConfig(model=DynamicsConfig(ensemble_size=2, hidden=(32,), epochs=epochs,
                                            seed=0, threads=1), horizon=3, holdout=0.34)


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
    first = train_from_bags([bag], spec, store, small(30),
                            on_epoch=lambda e, loss: epochs.append(loss))
    assert first.entry.accepted and store.current().path == str(first.checkpoint)
    assert len(epochs) == 30 and epochs[-1] < epochs[0]
    assert first.plot is not None and first.plot.stat().st_size > 1000
    metrics = first.metrics
    assert metrics['horizon'] == 3 and metrics['windows'] > 0 and metrics['score'] > 0
    model, manifest = load_checkpoint(first.checkpoint, expect_robot='hand24')
    assert manifest['source_bags'] == [str(bag.absolute())]
    assert manifest['metrics']['score'] == metrics['score']
    assert manifest['extra']['train_config']['model']['hidden'] == [32]

    # an untrained model is worse on the same held-out episodes: refused, not swapped in
    worse = train_from_bags([bag], spec, store, small(0))
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


def test_one_episode_cannot_be_validated(tmp_path):
    spec = load_robot_spec('hand24')
    path = tmp_path / 'one'
    TwinRecording(path, spec, sim_time=False, seed=1).run(
        steps=8, episode_steps=100, reset_at=-1, skip=set())
    with pytest.raises((ValueError, BagError), match='episode'):
        train_from_bags([path], spec, CheckpointStore(tmp_path / 's'),
                        small(1))
