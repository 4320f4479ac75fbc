"""
Status node: gathers every node's ``diagnostics`` and prints one JSON line per period.

``dexmpc up`` starts it with its stdout piped, turns each line into the live status and
keeps the last one for the end-of-run summary. It is a plain subscriber, so it changes
nothing in the graph it watches.
"""

from __future__ import annotations

import json
import sys

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node

from dexmpc_ros.ros import convert
from dexmpc_ros.ros.node_main import run_node
from dexmpc_ros.ros.params import declare

LEVEL_NAMES = {DiagnosticStatus.OK: 'ok', DiagnosticStatus.WARN: 'warn',
               DiagnosticStatus.ERROR: 'error', DiagnosticStatus.STALE: 'stale'}


class StatusNode(Node):
    """Diagnostics -> JSON lines on stdout."""

    def __init__(self) -> None:
        super().__init__('dexmpc_status')
        period = declare(self, 'period_s', 1.0, 'status line period [s] (wall clock)')
        self._nodes: dict[str, dict[str, str]] = {}
        self.create_subscription(DiagnosticArray, 'diagnostics', self._on_diagnostics, 50)
        self.create_timer(period, self._emit)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            entry = convert.diagnostic_values(status)
            entry['level'] = LEVEL_NAMES.get(status.level, 'unknown')
            entry['message'] = status.message
            self._nodes[status.name] = entry

    def _emit(self) -> None:
        sys.stdout.write(json.dumps({'nodes': self._nodes}) + '\n')
        sys.stdout.flush()


def main(args: list[str] | None = None) -> int:
    """Run the status node."""
    return run_node(StatusNode, args)


if __name__ == '__main__':
    sys.exit(main())
