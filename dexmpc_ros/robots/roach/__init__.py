"""VelociRoACH: twin + waypoint/figure-8 tasks and rewards, serial-radio driver, packet
protocol, firmware emulator."""
