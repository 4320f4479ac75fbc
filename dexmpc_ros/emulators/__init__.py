"""
Wire-protocol emulators of the hardware, for tests and hardware-in-the-loop runs; no rclpy.

Each emulator serves its device's real protocol on a pseudo-terminal (pty_link), so the
real client library (dynamixel-sdk, pyserial) talks to it exactly as to the device, and can
inject the faults the drivers must survive (no reply, corrupt checksums, partial frames,
error bits, unplug and re-plug).
"""
