"""
Environment for ROS processes started by dexmpc.

DDS discovery stays on this machine unless the user has chosen otherwise: Jazzy reads
``ROS_AUTOMATIC_DISCOVERY_RANGE`` (LOCALHOST), Humble ``ROS_LOCALHOST_ONLY`` (1). A user
who sets either variable (e.g. ``SUBNET`` for a robot on another computer) keeps it.

Every node is its own process, so several share the cores. OpenMP threads that spin while
waiting (torch's default) then fight over them: a 2-thread ensemble rollout measured 17 ms
alone and 187 ms (p50) next to one busy process, 29 ms with ``OMP_WAIT_POLICY=PASSIVE``.
Passive waiting is therefore the default here too (a user's own setting is kept).
"""

from __future__ import annotations

import os


def ros_environment(base: dict[str, str] | None = None,
                    domain_id: int | None = None) -> dict[str, str]:
    """
    Return a copy of ``base`` (default ``os.environ``) ready for dexmpc's ROS processes.

    Args:
        base: environment to start from.
        domain_id: set ``ROS_DOMAIN_ID`` (tests give each graph its own domain).
    """
    env = dict(os.environ if base is None else base)
    if 'ROS_AUTOMATIC_DISCOVERY_RANGE' not in env and 'ROS_LOCALHOST_ONLY' not in env:
        env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
        if env.get('ROS_DISTRO') == 'humble':
            env['ROS_LOCALHOST_ONLY'] = '1'
    if domain_id is not None:
        env['ROS_DOMAIN_ID'] = str(domain_id)
    env.setdefault('MUJOCO_GL', 'egl')
    env.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    env['PYTHONUNBUFFERED'] = '1'
    return env
