"""
A node's status on ``diagnostics``: the one publishing tail every node shares.

Each node reports one diagnostic_msgs/DiagnosticStatus named after itself, in a
DiagnosticArray of its own, with ``rate_hz`` among its values (docs/architecture.md); the
status node, ``dexmpc up`` and the run reports read them. A node builds its level, message
and values and calls :meth:`DiagnosticsPublisher.publish`; the message layout (names,
level constants, value formatting) lives in ``convert.diagnostic_status``.
"""

from __future__ import annotations

from collections.abc import Mapping

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node

from dexmpc_ros.ros import convert


class DiagnosticsPublisher:
    """
    Publishes ``node``'s status on its relative ``diagnostics`` topic.

    Args:
        node: the reporting node; its name is the status name, its clock the default stamp.
    """

    def __init__(self, node: Node) -> None:
        self._node = node
        self._pub = node.create_publisher(DiagnosticArray, 'diagnostics', 10)

    def publish(self, level: str, message: str, values: Mapping[str, object],
                hardware_id: str = '', stamp_ns: int | None = None) -> None:
        """
        Publish one status.

        Args:
            level: ``ok``, ``warn``, ``error`` or ``stale``.
            message: one line a person reads first.
            values: key -> value (floats written with 6 significant digits).
            hardware_id: the device the node drives, if any.
            stamp_ns: header stamp [ns]; None = the node's clock now (a twin stamps
                with simulated time).
        """
        if stamp_ns is None:
            stamp_ns = self._node.get_clock().now().nanoseconds
        status = convert.diagnostic_status(self._node.get_name(), level, message, dict(values),
                                           hardware_id=hardware_id)
        self._pub.publish(DiagnosticArray(header=convert.header(stamp_ns), status=[status]))
