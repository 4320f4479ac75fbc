"""Data: rosbag2 (MCAP) bags written and read with ``rosbags``, datasets, episodes."""
