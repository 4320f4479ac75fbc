"""
The status node over real DDS: diagnostics and safety/state in, JSON lines with events out,
judged by runtime/run_health.py as `dexmpc up` does.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time

import pytest

rclpy = pytest.importorskip('rclpy')

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import QoSDurabilityPolicy, QoSProfile  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from dexmpc_ros.ros import convert  # noqa: E402
from dexmpc_ros.runtime.run_health import RunHealth  # noqa: E402


def read_lines(stream, out: queue.Queue) -> None:
    for line in stream:
        out.put(json.loads(line))


def test_status_lines_carry_estops_and_node_errors(ros_env):
    start = time.time()
    proc = subprocess.Popen([sys.executable, '-m', 'dexmpc_ros.ros.status_node', '--ros-args',
                             '-p', 'period_s:=0.2'], env=ros_env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=read_lines, args=(proc.stdout, lines), daemon=True).start()
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(ros_env['ROS_DOMAIN_ID']))
    node = rclpy.create_node('status_test', context=context)
    latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    pub_state = node.create_publisher(String, 'safety/state', latched)
    pub_diag = node.create_publisher(DiagnosticArray, 'diagnostics', 10)
    judge = RunHealth(start, ('safety',))
    seen: list[dict] = []

    def diagnostics(name: str, level: str, message: str) -> None:
        pub_diag.publish(DiagnosticArray(status=[
            convert.diagnostic_status(name, level, message, {'rate_hz': 10.0})]))

    def wait_for(what, done, timeout_s=60.0):
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, f'no status line with {what}: {seen[-3:]}'
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            judge.observe(line)
            seen.append(line)

    def events_of(kind):
        return [e for line in seen for e in line.get('events', ()) if e['kind'] == kind]

    try:
        # latched before the status node subscribes: it still gets the current state
        pub_state.publish(String(data='ESTOPPED: estop: e-stop received'))
        wait_for('the latched e-stop', lambda: events_of('safety'))
        for _ in range(600):                  # until the status node hears diagnostics
            diagnostics('robot', 'ok', 'active')
            diagnostics('safety', 'error', 'E-STOPPED (estop: e-stop received)')
            if seen and 'robot' in seen[-1]['nodes']:
                break
            wait_for('any line', lambda n=len(seen): len(seen) > n)
        diagnostics('robot', 'error', 'FAULT: servo 4 overload; holding until ~/recover')
        wait_for('the fault', lambda: events_of('error') and len(events_of('error')) >= 2)
        diagnostics('robot', 'ok', 'active')
        wait_for('the fault cleared', lambda: any(e['node'] == 'robot'
                                                  for e in events_of('cleared')))
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        proc.terminate()
        proc.wait(timeout=10)
    assert events_of('safety')[0]['state'] == 'ESTOPPED: estop: e-stop received'
    errors = {e['node']: e['message'] for e in events_of('error')}
    assert errors == {'safety': 'E-STOPPED (estop: e-stop received)',
                      'robot': 'FAULT: servo 4 overload; holding until ~/recover'}
    assert all(start <= e['t'] <= time.time() for line in seen for e in line.get('events', ()))
    verdict = judge.verdict(time.time())
    assert len(verdict.problems) == 2, verdict
    assert verdict.problems[0].startswith('safety e-stopped at ')
    assert verdict.problems[0].endswith(': estop: e-stop received (still e-stopped at the end)')
    assert 'robot ERROR at ' in verdict.problems[1]
    assert ': FAULT: servo 4 overload; holding until ~/recover (cleared at ' in \
        verdict.problems[1]
