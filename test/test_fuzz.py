"""The hostile-command generator (safety/fuzz.py) draws every bad kind, reproducibly."""

from __future__ import annotations

import numpy as np
import pytest

from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.safety.fuzz import KINDS, CommandFuzzer, FuzzConfig

NOW = 1_000_000_000_000


@pytest.mark.parametrize('robot', ['widowx', 'hand24', 'roach'])
def test_every_kind_is_what_it_claims(robot):
    spec = load_robot_spec(robot)
    fuzzer = CommandFuzzer(spec, FuzzConfig(seed=3))
    m = len(spec.command_names)
    measured = spec.default_command
    obs = NOW - 20_000_000
    for _ in range(4000):
        cmd = fuzzer.next(measured, obs, NOW)
        same_length = len(cmd.values) == len(cmd.names) == m
        good_names = sorted(cmd.names) == sorted(spec.command_names)
        if cmd.kind == 'nan':
            assert not np.isfinite(cmd.values).all()
        elif cmd.kind == 'length':
            assert len(cmd.values) in (m - 1, m + 1) and len(cmd.names) == m
        elif cmd.kind == 'names':
            assert same_length and not good_names
        elif cmd.kind == 'past':
            assert cmd.stamp_ns == obs - 1_000_000_000
        elif cmd.kind == 'future':
            assert cmd.stamp_ns == NOW + 1_000_000_000
        elif cmd.kind == 'huge':
            assert np.all(np.abs(cmd.values) >= 1e6) and np.isfinite(cmd.values).all()
        if cmd.kind not in ('nan', 'length', 'names', 'past', 'future'):
            assert same_length and good_names and np.isfinite(cmd.values).all()
            assert cmd.stamp_ns == obs
    assert all(fuzzer.counts[k] > 100 for k in KINDS), fuzzer.counts


def test_same_seed_same_commands():
    spec = load_robot_spec('widowx')
    a, b = (CommandFuzzer(spec, FuzzConfig(seed=7)) for _ in range(2))
    for _ in range(200):
        x, y = a.next(spec.default_command, NOW, NOW), b.next(spec.default_command, NOW, NOW)
        assert x.names == y.names and x.kind == y.kind and x.stamp_ns == y.stamp_ns
        np.testing.assert_array_equal(x.values, y.values)


@pytest.mark.parametrize('field, value', [('rate_hz', 0.0), ('burst', 0), ('burst', 1.5),
                                          ('weights', (1.0,)), ('weights', (-1.0,) * 8)])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        FuzzConfig(**{field: value})
