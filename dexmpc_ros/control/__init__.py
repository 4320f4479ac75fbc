"""Controllers: ``act(obs) -> command (m,)`` and ``reset()``; no rclpy."""
