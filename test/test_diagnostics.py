"""
The diagnostics helper (ros/diagnostics.py) over real DDS: one status named after the node,
its level, message, formatted values and hardware id, stamped with the node's clock or
the stamp a node passes (a twin's simulated time).
"""

from __future__ import annotations

import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

from dexmpc_ros.ros import convert
from dexmpc_ros.ros.diagnostics import DiagnosticsPublisher
from dexmpc_ros.ros.probe import GraphProbe


@pytest.fixture
def probe(ros_domain):
    probe = GraphProbe(ros_domain, {'diagnostics': DiagnosticArray}, name='reporter')
    yield probe
    probe.close()


def received(probe: GraphProbe, count: int) -> list[DiagnosticArray]:
    probe.spin_until(lambda: len(probe.received['diagnostics']) >= count, 10.0,
                     f'{count} diagnostics messages')
    return [msg for _, msg in probe.received['diagnostics']]


def test_a_status_named_after_the_node_with_its_values(probe):
    diagnostics = DiagnosticsPublisher(probe.node)
    probe.spin_until(lambda: probe.node.count_subscribers('diagnostics') > 0, 10.0,
                     'the subscription')
    before = time.time_ns()
    diagnostics.publish('warn', 'two of three joints', {'rate_hz': 1 / 3, 'faults': 2},
                        hardware_id='toy arm')
    (msg,) = received(probe, 1)
    assert len(msg.status) == 1
    status = msg.status[0]
    assert (status.name, status.level, status.message, status.hardware_id) == \
        ('reporter', DiagnosticStatus.WARN, 'two of three joints', 'toy arm')
    assert convert.diagnostic_values(status) == {'rate_hz': '0.333333', 'faults': '2'}
    assert before <= convert.time_to_ns(msg.header.stamp) <= time.time_ns()


def test_a_given_stamp_is_kept(probe):
    diagnostics = DiagnosticsPublisher(probe.node)
    probe.spin_until(lambda: probe.node.count_subscribers('diagnostics') > 0, 10.0,
                     'the subscription')
    diagnostics.publish('ok', 'sim', {'rate_hz': 0.0}, stamp_ns=12_500_000_001)
    (msg,) = received(probe, 1)
    assert convert.time_to_ns(msg.header.stamp) == 12_500_000_001
    assert msg.status[0].level == DiagnosticStatus.OK and msg.status[0].hardware_id == ''
