"""Hardware drivers: one interface (base.Driver), one protocol client per robot; no rclpy."""
