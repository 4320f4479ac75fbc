"""
Status node: gathers every node's ``diagnostics`` and prints one JSON line per period.

``dexmpc up`` starts it with its stdout piped, turns each line into the live status and
keeps the last one for the end-of-run summary. It is a plain subscriber, so it changes
nothing in the graph it watches.

Each line is ``{"nodes": {<name>: {<key>: <value>, "level": ..., "message": ...}}}``, plus
``"events"`` (runtime/run_health.py reads them) when something happened since the last
line: every ``safety/state`` message (latched, so the state at start-up too) and each node
whose diagnostics enter or leave ERROR level, stamped ``t`` with the wall clock [s] at which
this node saw them. A line goes out at once after an event, so a fault or an e-stop just
before the run stops is not lost with the next timer tick.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile
from std_msgs.msg import String

from dexmpc_ros.ros import convert
from dexmpc_ros.ros.node_main import run_node
from dexmpc_ros.ros.params import declare

LEVEL_NAMES = {DiagnosticStatus.OK: 'ok', DiagnosticStatus.WARN: 'warn',
               DiagnosticStatus.ERROR: 'error', DiagnosticStatus.STALE: 'stale'}


class StatusNode(Node):
    """Diagnostics + safety/state -> JSON lines on stdout."""

    def __init__(self) -> None:
        super().__init__('dexmpc_status')
        period = declare(self, 'period_s', 1.0, 'status line period [s] (wall clock)')
        self._nodes: dict[str, dict[str, str]] = {}
        self._events: list[dict[str, Any]] = []
        self.create_subscription(DiagnosticArray, 'diagnostics', self._on_diagnostics, 50)
        latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(String, 'safety/state', self._on_safety_state, latched)
        self.create_timer(period, self._emit)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        events = len(self._events)
        for status in msg.status:
            entry = convert.diagnostic_values(status)
            entry['level'] = LEVEL_NAMES.get(status.level, 'unknown')
            entry['message'] = status.message
            was_error = self._nodes.get(status.name, {}).get('level') == 'error'
            if entry['level'] == 'error' and not was_error:
                self._event({'kind': 'error', 'node': status.name, 'message': status.message})
            elif was_error and entry['level'] != 'error':
                self._event({'kind': 'cleared', 'node': status.name, 'level': entry['level'],
                             'message': status.message})
            self._nodes[status.name] = entry
        if len(self._events) > events:
            self._emit()

    def _on_safety_state(self, msg: String) -> None:
        self._event({'kind': 'safety', 'state': msg.data})
        self._emit()

    def _event(self, event: dict[str, Any]) -> None:
        self._events.append({'t': time.time(), **event})

    def _emit(self) -> None:
        line: dict[str, Any] = {'nodes': self._nodes}
        if self._events:
            line['events'], self._events = self._events, []
        sys.stdout.write(json.dumps(line) + '\n')
        sys.stdout.flush()


def main(args: list[str] | None = None) -> int:
    """Run the status node."""
    return run_node(StatusNode, args)


if __name__ == '__main__':
    sys.exit(main())
