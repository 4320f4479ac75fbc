"""The dexmpc CLI: list, robots, and the errors users see for bad input."""

from __future__ import annotations

import subprocess
import sys

from dexmpc_ros.learning.store import CheckpointStore
from dexmpc_ros.runtime.experiment import available_experiments


def dexmpc(*args, timeout=60):
    return subprocess.run([sys.executable, '-m', 'dexmpc_ros.runtime.cli', *args],
                          capture_output=True, text=True, timeout=timeout)


def test_list_prints_name_then_description():
    result = dexmpc('list')
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == available_experiments()
    default = next(line for line in lines if line.startswith('hand_random_walk_sim '))
    assert 'random-walk' in default


def test_robots():
    result = dexmpc('robots')
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.strip().splitlines()] == \
        ['hand24', 'roach', 'widowx']


def test_unknown_experiment_lists_available(tmp_path):
    result = dexmpc('up', 'no_such_thing', '--output', str(tmp_path / 'run'))
    assert result.returncode == 2
    assert 'unknown experiment' in result.stderr
    assert 'hand_random_walk_sim' in result.stderr
    assert not (tmp_path / 'run').exists()


def test_malformed_experiment_names_file_and_key(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('robot: widowx\nduration_s: soon\nnodes:\n  twin: {kind: robot}\n')
    result = dexmpc('up', str(bad), '--output', str(tmp_path / 'run'))
    assert result.returncode == 2
    assert str(bad) in result.stderr and 'duration_s' in result.stderr


def test_bad_override(tmp_path):
    result = dexmpc('up', 'widowx_scripted_sim', '--set', 'nobody.x=1',
                    '--output', str(tmp_path / 'run'))
    assert result.returncode == 2
    assert "no node 'nobody'" in result.stderr


def test_up_help_documents_every_exit_status():
    result = dexmpc('up', '--help')
    assert result.returncode == 0, result.stderr
    help_text = result.stdout[result.stdout.index('exit status:'):]
    codes = [line.split()[0] for line in help_text.splitlines()[1:] if line[2:3].isdigit()]
    assert codes == ['0', '1', '2', '3'], help_text
    assert 'still e-stopped at the end' in help_text and 'ERROR' in help_text


def test_rollback_and_models_need_an_existing_store(tmp_path):
    for command in ('rollback', 'models'):
        result = dexmpc(command, str(tmp_path / 'typo'))
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            f"dexmpc: error: {tmp_path / 'typo'}: no checkpoint store here (no "
            f"history.json); pass a run's models/ folder or a dexmpc train --store folder"]
        assert not (tmp_path / 'typo').exists()   # looking did not create a store


def test_rollback_without_a_previous_model_is_a_user_error(tmp_path):
    CheckpointStore(tmp_path).propose(tmp_path / 'ckpt-0001', {'score': 1.0})
    result = dexmpc('rollback', str(tmp_path))
    assert result.returncode == 2
    assert 'only accepted model; nothing to roll back to' in result.stderr
    assert len(result.stderr.splitlines()) == 1
