"""
Robots: one folder per robot, shared interfaces at the top (no rclpy).

``twin.py`` (the Twin interface), ``mujoco_twin.py`` (its MuJoCo base), ``driver.py`` (the
Driver interface and its errors), ``driver_registry.py`` (a driver from a name + options),
``registry.py`` (ROBOTS: one line per robot), ``hil_world.py`` (emulator + twin for
hardware-in-the-loop runs). Each robot folder holds what is specific to it: ``twin.py``,
``tasks.py`` and ``rewards.py`` (its tasks and their planner rewards), ``driver.py``, its
emulator, protocol and kinematics, and ``assets/`` (MJCF scenes).
"""
