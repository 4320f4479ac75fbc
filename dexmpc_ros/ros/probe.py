"""
GraphProbe: an outside rclpy node that watches and pokes a running experiment.

Used by the multi-process tests and ``bench/safety.py``: it records chosen topics with
their receive time (wall clock, ``time.time_ns()``, the clock nodes stamp with), publishes
on ``command_raw`` and ``safety/estop``, and calls the ``safety/arm`` / ``safety/reset``
services. It has its own rclpy context, so several can live in one process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSDurabilityPolicy, QoSProfile
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory


class GraphProbe:
    """
    Records topics and injects faults into one ROS domain.

    Args:
        domain_id: the experiment's ROS domain.
        topics: topic -> message type to record as ``(receive time ns, msg)`` lists.
        name: node name.
    """

    def __init__(self, domain_id: int, topics: dict[str, type], name: str = 'probe') -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list[tuple[int, Any]]] = {t: [] for t in topics}
        for topic, msg_type in topics.items():
            self.node.create_subscription(msg_type, topic, self._recorder(topic), 1000)
        self.safety_states: list[tuple[int, str]] = []
        latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(
            String, 'safety/state',
            lambda m: self.safety_states.append((time.time_ns(), m.data)), latched)
        self.pub_raw = self.node.create_publisher(JointTrajectory, 'command_raw', 100)
        self.pub_estop = self.node.create_publisher(Bool, 'safety/estop', 10)
        self.clients = {name: self.node.create_client(Trigger, f'safety/{name}')
                        for name in ('arm', 'reset')}

    def _recorder(self, topic: str) -> Callable[[Any], None]:
        store = self.received[topic]
        return lambda msg: store.append((time.time_ns(), msg))

    # Spinning ----------------------------------------------------------------------------
    def spin_for(self, seconds: float) -> None:
        """Process callbacks for ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.01, max(end - time.monotonic(), 0.0)))

    def spin_until(self, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Process callbacks until ``done()``; AssertionError naming ``what`` on timeout."""
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f'timed out after {timeout_s} s waiting for {what}')
            self.executor.spin_once(timeout_sec=0.01)

    # Safety ------------------------------------------------------------------------------
    @property
    def safety_state(self) -> str:
        """The newest ``safety/state`` ('' before the first)."""
        return self.safety_states[-1][1] if self.safety_states else ''

    def wait_for_state(self, prefix: str, timeout_s: float) -> int:
        """Wait until ``safety/state`` starts with ``prefix``; return its receive time [ns]."""
        self.spin_until(lambda: self.safety_state.startswith(prefix), timeout_s,
                        f'safety/state {prefix} (now {self.safety_state!r})')
        return self.safety_states[-1][0]

    def estop(self, active: bool = True) -> int:
        """Publish on ``safety/estop``; return the publish time [ns]."""
        t = time.time_ns()
        self.pub_estop.publish(Bool(data=active))
        return t

    def call(self, service: str, timeout_s: float = 5.0) -> Trigger.Response:
        """Call ``safety/<service>`` (``arm`` or ``reset``) and return the response."""
        client = self.clients[service]
        self.spin_until(lambda: client.service_is_ready(), timeout_s, f'safety/{service}')
        future = client.call_async(Trigger.Request())
        self.spin_until(future.done, timeout_s, f'safety/{service} response')
        return future.result()

    def close(self) -> None:
        """Destroy the node and shut its context down."""
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
