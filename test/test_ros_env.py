"""Environment of dexmpc's ROS processes (runtime/ros_env.py)."""

from __future__ import annotations

from dexmpc_ros.runtime.ros_env import ros_environment


def test_defaults_keep_traffic_local_and_threads_polite():
    env = ros_environment({}, domain_id=7)
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert env['ROS_DOMAIN_ID'] == '7'
    assert env['OMP_WAIT_POLICY'] == 'PASSIVE' and env['MUJOCO_GL'] == 'egl'
    assert 'ROS_LOCALHOST_ONLY' not in env
    assert ros_environment({'ROS_DISTRO': 'humble'})['ROS_LOCALHOST_ONLY'] == '1'


def test_user_choices_are_kept():
    mine = {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET', 'OMP_WAIT_POLICY': 'ACTIVE',
            'MUJOCO_GL': 'osmesa'}
    env = ros_environment(mine)
    assert {k: env[k] for k in mine} == mine
    assert 'ROS_DOMAIN_ID' not in env
    assert ros_environment({'ROS_LOCALHOST_ONLY': '0'}).get(
        'ROS_AUTOMATIC_DISCOVERY_RANGE') is None
