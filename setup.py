"""
Build/install dexmpc_ros with colcon (ament_python) or pip.

On a machine with ROS 2 sourced (``ROS_DISTRO`` set, or ``import rclpy`` works), rclpy
and the message packages come from that ROS install. Elsewhere (a plain virtualenv), the
pinned ROS 2 Jazzy wheels from PyPI are required instead: real rclpy with Fast DDS.
"""

import importlib.util
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'dexmpc_ros'

# Keep in step with requirements.lock (the pins `make setup` installs).
ROS_WHEELS = [
    'ros-jazzy-rclpy[fastrtps]==7.1.6',
    'ros-jazzy-builtin-interfaces==2.0.3',
    'ros-jazzy-std-msgs==5.3.6',
    'ros-jazzy-std-srvs==5.3.6',
    'ros-jazzy-sensor-msgs==5.3.6',
    'ros-jazzy-geometry-msgs==5.3.6',
    'ros-jazzy-nav-msgs==5.3.6',
    'ros-jazzy-trajectory-msgs==5.3.6',
    'ros-jazzy-diagnostic-msgs==5.3.6',
    'ros-jazzy-visualization-msgs==5.3.6',
    'ros-jazzy-rosgraph-msgs==2.0.3',
]
PYTHON_DEPS = [
    'numpy>=1.26',
    'pyyaml>=6.0',
    'mujoco>=3.2',
    'gymnasium-robotics>=1.4',
    'rosbags>=0.10',
    'safetensors>=0.4',
    'matplotlib>=3.8',     # benchmark and training plots (PNG)
    'torch>=2.4',          # learned models and planners (pinned 2.13.0 CPU in requirements.lock)
    'tqdm>=4.60',          # training progress
]


def ros_available() -> bool:
    """True when a ROS 2 install provides rclpy (colcon build, sourced setup)."""
    if os.environ.get('ROS_DISTRO'):
        return True
    try:
        return importlib.util.find_spec('rclpy') is not None
    except (ImportError, ValueError):
        return False


def tree(directory: str) -> list:
    """data_files entries installing ``directory`` under share/dexmpc_ros, recursively."""
    entries = []
    for root, _, files in os.walk(directory):
        paths = [os.path.join(root, f) for f in files if not f.endswith('.pyc')]
        if paths:
            entries.append((os.path.join('share', PACKAGE, root), paths))
    return entries


def package_data() -> list:
    """Every non-Python file inside the package (the twins' MuJoCo models), relative to it.

    Listed file by file rather than by glob: old setuptools (Humble's) has no ``**``, and a
    pattern naming today's folders would silently drop files that move.
    """
    return sorted(os.path.relpath(os.path.join(root, f), PACKAGE)
                  for root, _, files in os.walk(PACKAGE) for f in files
                  if not f.endswith(('.py', '.pyc')))


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    package_data={PACKAGE: package_data()},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
        ('share/' + PACKAGE + '/urdf', glob('urdf/*')),
    ] + tree('config'),
    install_requires=PYTHON_DEPS + ([] if ros_available() else ROS_WHEELS),
    extras_require={'test': ['pytest>=8', 'pytest-xdist>=3']},
    python_requires='>=3.10',
    zip_safe=False,
    maintainer='dexmpc_ros maintainers',
    maintainer_email='dexmpc@example.com',
    description='Learned-dynamics MPC and robot learning as ROS 2 nodes, with MuJoCo twins.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'dexmpc = dexmpc_ros.runtime.cli:main',
            'twin_node = dexmpc_ros.ros.twin_node:main',
            'safety_node = dexmpc_ros.ros.safety_node:main',
            'controller_node = dexmpc_ros.ros.controller_node:main',
            'recorder_node = dexmpc_ros.ros.recorder_node:main',
            'status_node = dexmpc_ros.ros.status_node:main',
            'fuzz_node = dexmpc_ros.ros.fuzz_node:main',
            'mpc_node = dexmpc_ros.ros.mpc_node:main',
            'learner_node = dexmpc_ros.ros.learner_node:main',
            'driver_node = dexmpc_ros.ros.driver_node:main',
            'hand_driver_node = dexmpc_ros.ros.hand_driver_node:main',
            'camera_node = dexmpc_ros.ros.camera_node:main',
            'hil_world_node = dexmpc_ros.ros.hil_world_node:main',
        ],
    },
)
