"""
Packaging: package.xml, setup.py and the launch file agree with the code.

- every ROS package imported under dexmpc_ros/ros is an exec_depend in package.xml;
- every console script resolves to a ``main`` callable;
- the launch file builds its nodes through runtime.experiment.node_descriptions.
"""

from __future__ import annotations

import ast
import importlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import REPO

ROS_IMPORT = re.compile(r'^\s*(?:from|import)\s+(rclpy|rcl_interfaces|builtin_interfaces|'
                        r'rosgraph_msgs|\w+_msgs|\w+_srvs)\b', re.M)


def exec_depends() -> set[str]:
    root = ET.parse(REPO / 'package.xml').getroot()
    assert root.get('format') == '3'
    assert root.find('name').text == 'dexmpc_ros'
    assert root.find('export/build_type').text == 'ament_python'
    return {e.text for e in root.findall('exec_depend')}


def test_imported_ros_packages_are_exec_depends():
    imported = set()
    for path in (REPO / 'dexmpc_ros' / 'ros').glob('*.py'):
        imported |= set(ROS_IMPORT.findall(path.read_text()))
    assert imported, 'no ROS imports found: the regex is broken'
    missing = imported - exec_depends()
    assert not missing, f'package.xml lacks exec_depend for {sorted(missing)}'


def console_scripts() -> dict[str, str]:
    tree = ast.parse((REPO / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == 'console_scripts':
                    entries = [ast.literal_eval(v) for v in value.elts]
                    return dict(e.replace(' ', '').split('=') for e in entries)
    raise AssertionError('setup.py has no console_scripts')


def test_console_scripts_resolve():
    scripts = console_scripts()
    assert 'dexmpc' in scripts
    for name, target in scripts.items():
        module, func = target.split(':')
        if module.startswith('dexmpc_ros.ros.'):
            pytest.importorskip('rclpy')
        assert callable(getattr(importlib.import_module(module), func)), name


def test_every_node_kind_has_a_console_script():
    from dexmpc_ros.runtime.experiment import NODE_KINDS
    scripts = console_scripts()
    for kind in NODE_KINDS.values():
        assert scripts.get(kind.executable) == f'{kind.module}:main'


def test_launch_file_uses_the_shared_spec_function():
    source = (REPO / 'launch' / 'experiment.launch.py').read_text()
    compile(source, 'experiment.launch.py', 'exec')
    assert 'node_descriptions(' in source and 'generate_launch_description' in source


def test_launch_file_builds_nodes_when_launch_is_installed():
    pytest.importorskip('launch_ros')
    spec = importlib.util.spec_from_file_location('exp_launch',
                                                  REPO / 'launch' / 'experiment.launch.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert description.entities


def test_data_dirs_exist():
    for sub in ('launch', 'config/robots', 'config/experiments', 'urdf', 'resource'):
        assert (REPO / sub).is_dir(), sub
    assert (REPO / 'resource' / 'dexmpc_ros').is_file()
    assert Path(REPO / '.ci' / 'run').read_text().count('make test') == 1
