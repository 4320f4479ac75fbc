"""Experiment specs: parsing, overrides, errors, and the spec -> nodes function."""

from __future__ import annotations

import pytest
import yaml

from dexmpc_ros.core.errors import ConfigError, UnknownExperimentError
from dexmpc_ros.runtime.experiment import (available_experiments, describe_experiments,
                                           load_experiment, node_descriptions,
                                           ros_params_file)

SPEC = """
description: test spec
robot: widowx
backend: sim
duration_s: 5
nodes:
  twin: {kind: robot, parameters: {task: reach}}
  safety: {kind: safety}
  controller: {kind: controller, parameters: {policy: scripted, scripted.amplitude: 0.2}}
  recorder: {kind: recorder}
"""


def write(tmp_path, text, name='exp.yaml'):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_shipped_experiment_loads():
    names = available_experiments()
    assert 'hand_random_walk_sim' in names
    for name in names:
        experiment = load_experiment(name)
        assert experiment.description, name
        robot = {'twin'} if experiment.backend != 'hil' else {'driver', 'hil_world'}
        assert {d.kind for d in node_descriptions(experiment, '/tmp/x')} >= robot | {'safety'}


def test_describe_lists_name_and_description():
    rows = dict(describe_experiments())
    assert rows['hand_random_walk_sim'].startswith('24-DoF hand')


def test_node_descriptions_inject_robot_and_bag_dir(tmp_path):
    experiment = load_experiment(write(tmp_path, SPEC))
    descs = {d.name: d for d in node_descriptions(experiment, tmp_path / 'run')}
    assert descs['twin'].kind == 'twin' and descs['twin'].module.endswith('twin_node')
    assert descs['twin'].parameters['task'] == 'reach'
    assert all(d.parameters['robot'] == 'widowx' for d in descs.values())
    assert descs['recorder'].parameters['output_dir'] == str(tmp_path / 'run' / 'bag')
    assert descs['controller'].parameters['scripted.amplitude'] == 0.2
    params = ros_params_file(list(descs.values()))
    assert params['/safety']['ros__parameters']['robot'] == 'widowx'


def test_sim_time_makes_twin_the_clock(tmp_path):
    experiment = load_experiment(write(tmp_path, SPEC + 'use_sim_time: true\n'))
    descs = {d.name: d for d in node_descriptions(experiment)}
    assert descs['twin'].parameters['publish_clock'] is True
    assert descs['twin'].parameters['use_sim_time'] is False
    assert descs['safety'].parameters['use_sim_time'] is True


def test_overrides(tmp_path):
    path = write(tmp_path, SPEC)
    experiment = load_experiment(path, ['controller.scripted.amplitude=0.5', 'twin.seed=3',
                                        'duration_s=2'])
    nodes = {n.name: n for n in experiment.nodes}
    assert nodes['controller'].parameters['scripted.amplitude'] == 0.5
    assert nodes['twin'].parameters['seed'] == 3
    assert experiment.duration_s == 2.0
    with pytest.raises(ConfigError, match="no node 'ctrl'"):
        load_experiment(path, ['ctrl.x=1'])
    with pytest.raises(ConfigError, match='node.param=value'):
        load_experiment(path, ['controller.x'])


def test_unknown_experiment_lists_available():
    with pytest.raises(UnknownExperimentError) as info:
        load_experiment('no_such_experiment')
    assert 'hand_random_walk_sim' in str(info.value)


@pytest.mark.parametrize('mutation, key', [
    (('robot: widowx', 'robot: r2d2'), 'robot'),
    (('backend: sim', 'backend: cloud'), 'backend'),
    (('duration_s: 5', 'duration_s: -1'), 'duration_s'),
    (('{kind: safety}', '{kind: magic}'), 'nodes.safety.kind'),
    (('{kind: safety}', '{kynd: safety}'), 'nodes.safety'),
    (('{kind: recorder}', '{kind: recorder, parameters: {x: {a: 1}}}'),
     'nodes.recorder.parameters.x'),
    (('twin: {kind: robot,', 'twin: {kind: twin,'), 'no node of kind "robot"'),
    (('description: test spec', 'descripton: test spec'), 'descripton'),
    (('nodes:', 'nodes: ['), 'invalid YAML'),
])
def test_malformed_experiment_names_file_and_key(tmp_path, mutation, key):
    path = write(tmp_path, SPEC.replace(*mutation, 1))
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert str(path) in str(info.value)
    assert key in str(info.value)


def test_hardware_backend_runs_the_robots_driver_node(tmp_path):
    experiment = load_experiment(write(tmp_path, SPEC.replace('backend: sim',
                                                              'backend: hardware')))
    robot = {d.name: d for d in node_descriptions(experiment)}['twin']
    assert (robot.kind, robot.executable) == ('driver', 'driver_node')
    assert robot.parameters['driver'] == 'widowx'
    options = yaml.safe_load(robot.parameters['driver_options'])
    assert options['port'] == '/dev/ttyDXL' and options['baud'] == 1000000
    hand = load_experiment(write(tmp_path, SPEC.replace('backend: sim', 'backend: hardware')
                                 .replace('robot: widowx', 'robot: hand24'), 'hand.yaml'))
    robot = {d.name: d for d in node_descriptions(hand)}['twin']
    assert (robot.kind, robot.parameters['controller']) == ('hand_driver',
                                                            'rh_trajectory_controller')


def test_mixed_number_lists_become_floats(tmp_path):
    text = SPEC.replace('{kind: recorder}', '{kind: recorder, parameters: {v: [1, 2.5]}}')
    experiment = load_experiment(write(tmp_path, text))
    rec = next(n for n in experiment.nodes if n.name == 'recorder')
    assert rec.parameters['v'] == [1.0, 2.5]


def test_resolved_spec_round_trips(tmp_path):
    experiment = load_experiment(write(tmp_path, SPEC))
    data = yaml.safe_load(yaml.safe_dump(experiment.to_dict()))
    assert data['nodes']['twin'] == {'kind': 'robot', 'parameters': {'task': 'reach'}}
