"""
Recorder node: the experiment's topics -> a crash-safe rosbag2 (MCAP) bag.

Subscribes to each wanted topic as soon as a publisher appears (graph polled every
``discovery_period_s``) with ``raw=True``, so rclpy hands over the serialized CDR bytes
and the bag stores them untouched. The subscription QoS is the one every publisher can
serve: best effort if any publisher is best effort (images), transient local if all are
(the latched ``episode`` topic), reliable and volatile otherwise. Bag time is this node's
clock (simulated time under ``use_sim_time``) at reception.

Writing happens off the executor thread (see :mod:`dexmpc_ros.data.bag_writer`); the
callbacks only enqueue. On shutdown (SIGINT/SIGTERM) ``destroy_node`` closes the bag.
"""

from __future__ import annotations

import importlib
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import (QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile,
                       QoSReliabilityPolicy)
from rclpy.topic_endpoint_info import TopicEndpointInfo
from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                QosTime)

from dexmpc_ros.core.errors import BagError, ConfigError
from dexmpc_ros.core.message_fields import ns_to_sec_nanosec
from dexmpc_ros.data.bag_writer import BagWriter, BagWriterConfig
from dexmpc_ros.ros.diagnostics import DiagnosticsPublisher
from dexmpc_ros.ros.node_main import run_node
from dexmpc_ros.ros.params import config_from_node

#: never recorded when recording "everything" (rosbag2 skips them too)
EXCLUDED = ('/rosout', '/parameter_events')


@dataclass(frozen=True)
class RecorderConfig:
    """
    Recorder settings (the ``topics`` string array is declared next to these).

    Attributes:
        output_dir: bag directory to create (must not exist); empty: rosbag2_<time> here.
        flush_period_s: seconds between segment closes; a crash loses at most this much.
        queue_size: messages waiting to be written before new ones are dropped.
        discovery_period_s: how often the graph is polled for new publishers [s].
        metadata_version: rosbag2 metadata version, 8 (Humble and Jazzy) or 9 (Jazzy).
    """

    output_dir: str = ''
    flush_period_s: float = 1.0
    queue_size: int = 10000
    discovery_period_s: float = 0.5
    metadata_version: int = 8

    def __post_init__(self) -> None:
        if not self.discovery_period_s > 0:
            raise ValueError(f'discovery_period_s must be > 0, got {self.discovery_period_s}')


class RecorderNode(Node):
    """Adapter: graph discovery + raw subscriptions -> BagWriter; diagnostics."""

    def __init__(self, node_name: str = 'recorder') -> None:
        super().__init__(node_name)
        self.cfg = config_from_node(self, RecorderConfig)
        self.wanted = self._declare_topics()
        output = self.cfg.output_dir or \
            f'rosbag2_{datetime.now():%Y_%m_%d-%H_%M_%S}'
        try:
            writer_cfg = BagWriterConfig(flush_period_s=self.cfg.flush_period_s,
                                         queue_size=self.cfg.queue_size,
                                         version=self.cfg.metadata_version)
        except ValueError as exc:
            raise ConfigError(f'node {self.get_name()}: {exc}') from exc
        try:
            self.writer = BagWriter(output, writer_cfg,
                                    custom_data={'recorder': self.get_fully_qualified_name()})
        except BagError as exc:
            raise ConfigError(f'node {self.get_name()}: parameter output_dir: {exc}') from exc
        self._recorded: dict[str, object] = {}
        self._unrecordable: set[str] = set()
        self._last_messages = 0
        self._last_dropped = 0
        self._last_time = time.monotonic()
        self.pub_diag = DiagnosticsPublisher(self)
        self.create_timer(self.cfg.discovery_period_s, self._discover)
        self.create_timer(1.0, self._publish_diagnostics)
        what = ', '.join(sorted(self.wanted)) if self.wanted else 'every topic'
        self.get_logger().info(f'recording {what} to {Path(output).resolve()}')
        self._discover()

    def _declare_topics(self) -> set[str]:
        # Declared by hand: an empty default array has no element type in rclpy, and
        # `topics:=[]` arrives unset, so both mean "everything".
        if not self.has_parameter('topics'):
            self.declare_parameter('topics', [], ParameterDescriptor(
                description='topics to record (relative names use the node namespace); '
                            'empty: every topic except /rosout and /parameter_events',
                dynamic_typing=True))
        value = self.get_parameter('topics').value
        if value is None:
            value = []
        if not isinstance(value, (list, tuple)) or \
                not all(isinstance(v, str) for v in value):
            raise ConfigError(f'node {self.get_name()}: parameter topics must be a string '
                              f'array, got {value!r}')
        return {self.resolve_topic_name(v) for v in value if v}

    # Discovery --------------------------------------------------------------------------
    def _discover(self) -> None:
        for name, _ in self.get_topic_names_and_types():
            if name in self._recorded or name in self._unrecordable:
                continue
            if self.wanted and name not in self.wanted:
                continue
            if not self.wanted and name in EXCLUDED:
                continue
            publishers = self.get_publishers_info_by_topic(name)
            if publishers:
                self._subscribe(name, publishers)

    def _subscribe(self, topic: str, publishers: list[TopicEndpointInfo]) -> None:
        types = sorted({p.topic_type for p in publishers})
        msgtype = types[0]
        if len(types) > 1:
            self.get_logger().warn(f'{topic} is published with several types {types}; '
                                   f'recording {msgtype} only')
        try:
            package, kind, name = msgtype.split('/')
            msg_class = getattr(importlib.import_module(f'{package}.{kind}'), name)
            self.writer.add_topic(topic, msgtype, [offered_qos(p.qos_profile)
                                                   for p in publishers
                                                   if p.topic_type == msgtype])
        except (ValueError, ImportError, AttributeError, BagError) as exc:
            self._unrecordable.add(topic)
            self.get_logger().warn(f'not recording {topic} ({msgtype}): {exc}')
            return
        qos = subscription_qos([p.qos_profile for p in publishers])

        def on_message(data: bytes, topic: str = topic, msgtype: str = msgtype) -> None:
            self.writer.write(topic, msgtype, data, self.get_clock().now().nanoseconds)

        self._recorded[topic] = self.create_subscription(
            msg_class, topic, on_message, qos, raw=True)
        self.get_logger().info(
            f'recording {topic} ({msgtype}, {qos.reliability.name.lower()}, '
            f'{qos.durability.name.lower()})')

    # Diagnostics ------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        stats = self.writer.stats()
        now = time.monotonic()
        rate = (stats.messages - self._last_messages) / max(now - self._last_time, 1e-9)
        new_drops = stats.dropped - self._last_dropped
        self._last_messages, self._last_dropped, self._last_time = \
            stats.messages, stats.dropped, now
        if stats.error:
            level, message = 'error', f'bag writer failed: {stats.error}'
        elif new_drops:
            level, message = 'warn', f'dropped {new_drops} messages (writer queue full)'
        else:
            level, message = 'ok', f'{len(self._recorded)} topics -> {self.writer.path}'
        if new_drops:
            self.get_logger().warn(message, throttle_duration_sec=5.0)
        self.pub_diag.publish(level, message, {
            'rate_hz': rate, 'messages': stats.messages, 'flushed': stats.flushed,
            'dropped': stats.dropped, 'segments': stats.segments, 'bytes': stats.bytes,
            'pending': stats.pending, 'topics': len(self._recorded)})

    def destroy_node(self) -> None:
        """Close the bag (every queued message written, metadata final), then the node."""
        writer = getattr(self, 'writer', None)
        if writer is not None:
            try:
                stats = writer.close()
                self.get_logger().info(
                    f'bag closed: {stats.messages} messages in {stats.segments} segments, '
                    f'{stats.bytes / 1e6:.1f} MB, {stats.dropped} dropped -> {writer.path}')
            except BagError as exc:
                self.get_logger().error(f'bag not closed cleanly: {exc}')
        super().destroy_node()


def subscription_qos(offered: list[QoSProfile]) -> QoSProfile:
    """
    The QoS a subscription needs to hear every publisher of a topic.

    Best effort if any publisher is best effort (a reliable reader cannot match it),
    transient local only if all publishers are (a transient-local reader cannot match a
    volatile writer), keep-last 100 (10 for best effort: sensor streams, big messages).
    """
    best_effort = any(q.reliability == QoSReliabilityPolicy.BEST_EFFORT for q in offered)
    latched = bool(offered) and all(
        q.durability == QoSDurabilityPolicy.TRANSIENT_LOCAL for q in offered)
    return QoSProfile(
        history=QoSHistoryPolicy.KEEP_LAST, depth=10 if best_effort else 100,
        reliability=(QoSReliabilityPolicy.BEST_EFFORT if best_effort
                     else QoSReliabilityPolicy.RELIABLE),
        durability=(QoSDurabilityPolicy.TRANSIENT_LOCAL if latched
                    else QoSDurabilityPolicy.VOLATILE))


def offered_qos(profile: QoSProfile) -> Qos:
    """A publisher's rclpy QoS as the rosbags profile stored in the bag's metadata."""
    def time_of(duration: Duration) -> QosTime:
        return QosTime(*ns_to_sec_nanosec(duration.nanoseconds))

    def enum(cls: type, policy: object) -> object:
        return cls.__members__.get(getattr(policy, 'name', ''), cls['UNKNOWN'])

    return Qos(enum(QosHistory, profile.history), int(profile.depth),
               enum(QosReliability, profile.reliability),
               enum(QosDurability, profile.durability), time_of(profile.deadline),
               time_of(profile.lifespan), enum(QosLiveliness, profile.liveliness),
               time_of(profile.liveliness_lease_duration),
               bool(profile.avoid_ros_namespace_conventions))


def main(args: list[str] | None = None) -> int:
    """Run the recorder node."""
    return run_node(RecorderNode, args)


if __name__ == '__main__':
    sys.exit(main())
