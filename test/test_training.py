"""Offline training from bags (learning/dynamics/training.py, `dexmpc train`): a hand-twin bag."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from test_transitions import TwinRecording

from dexmpc_ros.core.errors import BagError, CheckpointError
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.data.bag_reader import read_bag
from dexmpc_ros.learning.checkpoint import load_checkpoint
from dexmpc_ros.learning.dynamics.config import DynamicsConfig
from dexmpc_ros.learning.store import CheckpointStore
from dexmpc_ros.learning.dynamics.training import TrainConfig, train_from_bags
from dexmpc_ros.runtime.cli import main


def small(epochs: int) -> TrainConfig:
    """A quick training: 2 members of 32 units, 3-step validation on a third held out."""
    return TrainConfig(model=DynamicsConfig(ensemble_size=2, hidden=(32,), epochs=epochs,
                                            seed=0, threads=1), horizon=3, holdout=0.34)


README = Path(__file__).resolve().parents[1] / 'README.md'


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
                        small(1))


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


def readme_blocks(heading: str) -> list[tuple[str, str]]:
    """``(language, code)`` of each fenced block in the README section under ``heading``."""
    section = README.read_text(encoding='utf-8').split(heading + '\n', 1)[1]
    section = section.split('\n## ', 1)[0].split('\n### ', 1)[0]
    return re.findall(r'```(\w+)\n(.*?)```', section, re.S)


def run_line(line: str, cwd: Path) -> subprocess.CompletedProcess:
    """A README shell line: ``python ...`` or ``dexmpc ...``, with this interpreter."""
    words = shlex.split(line)
    command = {'python': [sys.executable], 'dexmpc': [sys.executable, '-m',
                                                      'dexmpc_ros.runtime.cli']}[words[0]]
    return subprocess.run(command + words[1:], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_a_bag_another_recorder_wrote_trains_through_the_cli(tmp_path):
    """
    The README's "Training from any rosbag2 bag" steps, run as written: a bag written with
    plain rosbags (namespaced topics, no task_state, a topic of an empty-definition type)
    trains with --no-task-state; without it the error says to pass it.
    """
    (python, script), (shell, commands) = readme_blocks('### Training from any rosbag2 bag')
    assert (python, shell) == ('python', 'bash')
    name = script.splitlines()[0].lstrip('# ').strip()
    (tmp_path / name).write_text(script)
    lines = commands.strip().splitlines()
    assert lines[0] == f'python {name}'
    written = run_line(lines[0], tmp_path)
    assert written.returncode == 0, written.stderr

    bag = read_bag(tmp_path / 'foreign_bag')          # the empty type reads, as no fields
    assert len(bag['/arm/heartbeat']) == 90 == len(bag['/arm/joint_states'])
    assert bag['/arm/heartbeat'][0][1].__msgtype__ == 'test_msgs/msg/Empty'

    without = run_line(lines[1].replace(' --no-task-state', ''), tmp_path)
    assert without.returncode == 2
    assert without.stderr.splitlines() == [without.stderr.strip()]
    assert "'task_state' matches no topic" in without.stderr
    assert 'pass --no-task-state to learn from joint_states alone' in without.stderr

    trained = run_line(lines[1], tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert 'ACCEPTED, now current: first model' in trained.stdout
    _, manifest = load_checkpoint(tmp_path / 'foreign_models' / 'ckpt-0001',
                                  expect_robot='widowx')
    spec = load_robot_spec('widowx')
    assert len(manifest['state_names']) == 2 * len(spec.joint_names)   # no task entries
    assert manifest['source_bags'] == [str(tmp_path / 'foreign_bag')]
    assert manifest['extra']['train_transitions'] + \
        manifest['extra']['validation_transitions'] > 60


def test_no_task_state_is_refused_where_the_model_in_use_has_task_entries(bag, tmp_path):
    spec = load_robot_spec('hand24')
    store = CheckpointStore(tmp_path / 'store')
    train_from_bags([bag], spec, store, small(1), plot=False)
    with pytest.raises(CheckpointError, match=r"has task entries \['valve_angle'"):
        train_from_bags([bag], spec, store, small(1), plot=False,
                        task_names=())
    assert len(store.entries) == 1
