"""dexmpc_ros: learned-dynamics MPC and robot learning as ROS 2 nodes."""

__version__ = '0.1.0'
