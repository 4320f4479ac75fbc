"""WidowX 250 6DOF (wx250s): twin + reach task, Dynamixel driver, servo table, bus emulator
and its twin physics, forward kinematics."""
