"""rclpy nodes and message conversion: the only code that imports rclpy or messages."""
