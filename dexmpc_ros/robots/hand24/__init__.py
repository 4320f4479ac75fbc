"""24-DoF Shadow-style hand: twin + valve/Baoding tasks and rewards, the ros2_control client
driver (joint-name map, coupled J0)."""
