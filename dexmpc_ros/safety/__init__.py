"""
Safety: the only path from any controller to any robot.

``limits`` holds the rules as pure functions and ``filter_command`` that runs them in a
fixed order; ``supervisor`` holds the state machine (armed, e-stopped, disarmed), the
watchdog hold and the counters. Neither imports rclpy: ``ros/safety_node.py`` adapts them.
"""

from dexmpc_ros.safety.limits import (
    RULES,
    CommandLimits,
    Decision,
    MeasuredState,
    filter_command,
)
from dexmpc_ros.safety.supervisor import SafetyState, Supervisor, SupervisorConfig

__all__ = ['RULES', 'CommandLimits', 'Decision', 'MeasuredState', 'filter_command',
           'SafetyState', 'Supervisor', 'SupervisorConfig']
