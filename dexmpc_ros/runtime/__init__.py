"""Experiment specs, the process runner and the ``dexmpc`` CLI (no rclpy)."""
