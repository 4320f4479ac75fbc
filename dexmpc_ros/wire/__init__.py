"""
Wire protocols shared by drivers and emulators (no rclpy, no robot knowledge).

``dynamixel_protocol`` (Dynamixel Protocol 2.0 packets and control-table helpers),
``dynamixel_bus`` (an emulated Dynamixel bus: per-servo control tables served over a pty),
``xbee`` (XBee API frames), ``pty_link`` (a pseudo-terminal that stands in for a USB
serial adapter, with unplug/replug). The real client libraries (dynamixel-sdk, pyserial)
talk to the emulators exactly as to the devices.
"""
