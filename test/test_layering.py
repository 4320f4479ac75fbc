"""
The layering rule: nothing outside dexmpc_ros/ros imports rclpy or message packages.

Every non-ros module is imported in a fresh interpreter where rclpy and *_msgs imports
fail; any module that needs them breaks the rule.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import dexmpc_ros

BLOCKER = r'''
import importlib, importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        root = name.split('.')[0]
        if root in ('rclpy', 'rosidl_runtime_py', 'launch', 'launch_ros') or \
                root.endswith('_msgs') or root.endswith('_srvs') or root == 'builtin_interfaces':
            raise ImportError(f'layering: {name} imported outside dexmpc_ros.ros')
sys.meta_path.insert(0, Block())
for mod in sys.argv[1:]:
    importlib.import_module(mod)
'''


def core_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(dexmpc_ros.__path__, 'dexmpc_ros.'):
        if not info.name.startswith('dexmpc_ros.ros'):
            names.append(info.name)
    return names


def test_core_modules_import_without_ros():
    modules = core_modules()
    assert 'dexmpc_ros.runtime.runner' in modules and 'dexmpc_ros.control.scripted' in modules
    result = subprocess.run([sys.executable, '-c', BLOCKER, *modules], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
