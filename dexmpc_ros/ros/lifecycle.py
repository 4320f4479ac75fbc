"""
Helpers shared by the hardware lifecycle nodes (``driver_node``, ``hand_driver_node``,
``camera_node``): start-up without a lifecycle manager, the process exit on a failed
start-up, and the check of a ``command`` before a driver forwards it.

Autostart: ``dexmpc up`` has no lifecycle manager, so a node with ``autostart: true``
configures and activates itself (:func:`autostart`); when that fails the process exits 1
and its last output line is the node's one-line message (:func:`run_lifecycle_node`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from rclpy.impl.rcutils_logger import RcutilsLogger
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from trajectory_msgs.msg import JointTrajectory

from dexmpc_ros.core.errors import DexmpcError
from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.ros import convert
from dexmpc_ros.ros.node_main import run_node
from dexmpc_ros.safety.limits import CommandLimits
from dexmpc_ros.safety.rejection_rules import check_age, check_well_formed

SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE
ERROR = TransitionCallbackReturn.ERROR


class StartupError(DexmpcError):
    """Autostart could not configure or activate the node; the message is the one line."""


def autostart(node: LifecycleNode) -> None:
    """
    Configure and activate ``node`` now (no lifecycle manager).

    The node records its failure text in ``node.startup_error``. On failure the node is
    destroyed (its ``destroy_node`` releases the device) and StartupError raised.
    """
    for transition in (node.trigger_configure, node.trigger_activate):
        if transition() != SUCCESS:
            message = getattr(node, 'startup_error', '') or \
                f'{node.get_name()}: {transition.__name__} failed'
            node.destroy_node()
            raise StartupError(message)


def run_lifecycle_node(factory: Callable[[], LifecycleNode], args: list[str] | None = None,
                       threads: int = 1) -> int:
    """:func:`run_node`, plus exit code 1 with the one-line message when autostart fails."""
    try:
        return run_node(factory, args, threads)
    except StartupError as exc:
        sys.stderr.write(f'{exc}\n')
        sys.stderr.flush()
        return 1


class CommandVerdict(NamedTuple):
    """
    What a driver node may do with one ``command``.

    Attributes:
        values: (m,) the values to forward, in the robot's command order; None = refused.
        refused: the diagnostics counter of the refusal (``commands_inactive``,
            ``commands_malformed`` or ``commands_stale``); '' when forwarded.
        reason: why it was refused, one line.
    """

    values: np.ndarray | None
    refused: str = ''
    reason: str = ''


class CommandGate:
    """
    The check a driver node runs on ``command`` before it forwards it to the hardware.

    Refused, in this order: while the node is inactive (``commands_inactive``); a command
    the robot cannot apply by the safety rules ``finite`` and ``names`` (``commands_malformed``:
    unknown, missing or duplicate joints, wrong length, NaN/inf; a command in another joint
    order is reordered); by the rule ``age`` with the node's own budget and tolerance
    (``commands_stale``). Refusals are logged here (throttled); the node counts them.

    Args:
        spec: the robot; its actuated joints are what a command must name.
        interface: ``position`` or ``velocity``: the trajectory point field read.
        age_budget_s: a command stamped longer ago than this is stale [s].
        future_tolerance_s: a command stamped further ahead than this is stale [s].
        logger: the node's logger.
    """

    def __init__(self, spec: RobotSpec, interface: str, age_budget_s: float,
                 future_tolerance_s: float, logger: RcutilsLogger) -> None:
        self._limits = CommandLimits.from_spec(spec)
        self._interface = interface
        self._budget_ns = int(round(age_budget_s * 1e9))
        self._future_ns = int(round(future_tolerance_s * 1e9))
        self._logger = logger

    def check(self, msg: JointTrajectory, active: bool, now_ns: int) -> CommandVerdict:
        """Judge ``msg`` received at ``now_ns`` [ns] by a node that is ``active`` or not."""
        if not active:
            return CommandVerdict(None, 'commands_inactive', 'node not active')
        names, values, stamp_ns = convert.command_to_arrays(msg, self._interface)
        formed = check_well_formed(names, values, self._limits)
        if formed.fired:
            self._logger.error(f'ignoring malformed command for joints {names}: '
                               f'{formed.reason}', throttle_duration_sec=1.0)
            return CommandVerdict(None, 'commands_malformed', formed.reason)
        age = check_age(stamp_ns, now_ns, self._budget_ns, self._future_ns)
        if age.fired:
            self._logger.warn(f'ignoring stale command: {age.reason}',
                              throttle_duration_sec=1.0)
            return CommandVerdict(None, 'commands_stale', age.reason)
        return CommandVerdict(formed.values)
