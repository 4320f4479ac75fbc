"""Config schema, errors and small shared types (no rclpy)."""
