"""
Safety: the only path from any controller to any robot.

``rejection_rules`` and ``clamp_rules`` hold the rules as pure functions (``limits`` the
types and rule names they share), ``filter`` runs them in a fixed order on one command,
``supervisor`` holds the state machine (disarmed, armed, e-stopped), the heartbeat and
watchdog holds and the counters. None imports rclpy: ``ros/safety_node.py`` adapts them.
"""

from dexmpc_ros.safety.filter import Decision, FilterSettings, Inputs, filter_command
from dexmpc_ros.safety.limits import RULES, CommandLimits, MeasuredState
from dexmpc_ros.safety.supervisor import SafetyState, Supervisor, SupervisorConfig

__all__ = ['RULES', 'CommandLimits', 'Decision', 'FilterSettings', 'Inputs', 'MeasuredState',
           'filter_command', 'SafetyState', 'Supervisor', 'SupervisorConfig']
