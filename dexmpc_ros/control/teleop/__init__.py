"""
Teleoperation below the ROS line (home of issue 14's devices and mappings).

Device readers (keyboard, evdev gamepad, SpaceMouse) turn input events into the
``sensor_msgs/Joy`` convention's axes and buttons; per-robot mappings turn those into
commands that go, like any controller's, through the safety supervisor. Empty until issue
14 lands: this package marks where they go.
"""
