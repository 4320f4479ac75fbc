"""Robot specs, hardware protocol clients, MuJoCo twins and their tasks (no rclpy)."""
