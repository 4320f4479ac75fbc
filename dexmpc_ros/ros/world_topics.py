"""
The topics a world publishes beside the robot's joints, for controllers, learners and the report.

Both worlds use it: the twin node (simulation) and the hil_world node (the twin behind a
driver's wire). ``task_state`` (JointState of named task values), ``reward`` (Float64, one
per step), ``episode`` and ``episode_start`` (latched: a new episode's number, and a Header
with its first state's stamp and the number as frame_id; always both, the report splits
episodes on them) and ``odom`` for robots with a body pose.
"""

from __future__ import annotations

from collections.abc import Sequence

from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64, Header, Int32

from dexmpc_ros.ros import convert

LATCHED = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)


class WorldTopics:
    """
    The world's publishers on ``node``.

    Args:
        node: the publishing node.
        odom: whether to publish ``odom`` (the robot has a body pose).
    """

    def __init__(self, node: Node, odom: bool) -> None:
        self._task = node.create_publisher(JointState, 'task_state', 10)
        self._reward = node.create_publisher(Float64, 'reward', 10)
        self._episode = node.create_publisher(Int32, 'episode', LATCHED)
        self._episode_start = node.create_publisher(Header, 'episode_start', LATCHED)
        self._odom = node.create_publisher(Odometry, 'odom', 10) if odom else None

    def episode(self, stamp_ns: int, episode: int) -> None:
        """Episode ``episode`` starts with the state stamped ``stamp_ns``."""
        self._episode.publish(Int32(data=episode))
        self._episode_start.publish(convert.header(stamp_ns, str(episode)))

    def state(self, stamp_ns: int, names: Sequence[str], values: Sequence[float],
              pose=None) -> None:
        """The task state (and the body pose, when there is one) at ``stamp_ns``."""
        self._task.publish(convert.joint_state_msg(stamp_ns, names, values))
        if self._odom is not None and pose is not None:
            self._odom.publish(convert.odometry_msg(stamp_ns, pose))

    def reward(self, value: float) -> None:
        """The reward of the step that led to the last state."""
        self._reward.publish(Float64(data=float(value)))
