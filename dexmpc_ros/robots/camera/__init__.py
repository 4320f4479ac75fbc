"""Intel RealSense D435: pyrealsense2 driver and a software-device emulator."""
