"""
A real ``colcon build`` of this package into a temporary workspace, checked the way
``ros2 launch`` finds things.

``ros2 launch dexmpc_ros experiment.launch.py`` resolves the package through the ament index
(``share/ament_index/resource_index/packages/dexmpc_ros``), the launch file under
``share/dexmpc_ros/launch`` and every node's executable as
``<package prefix>/lib/dexmpc_ros/<executable>`` (launch_ros' ``Node(package, executable)``).
Only a colcon-style install lays the package out like that; the ``.venv`` install does not.

colcon-core, colcon-ros, colcon-bash and ros-jazzy-ament-package are pinned in
requirements.lock. ``launch``/``launch_ros`` are not on PyPI: the installed launch file is run
with minimal stand-ins for their four classes that record each ``Node(package=...,
executable=...)`` it asks for, so the executables checked are the ones the launch file names
for every shipped experiment, not a list kept here.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import REPO

from dexmpc_ros.runtime.experiment import NODE_KINDS, available_experiments

PACKAGE = 'dexmpc_ros'
#: what a colcon build reads from the source tree (setup.py's data_files and packages)
SOURCES = ('setup.py', 'setup.cfg', 'package.xml', 'resource', 'launch', 'config', 'urdf',
           PACKAGE)
COLCON = 'import sys; from colcon_core.command import main; sys.exit(main())'


def colcon_build(workspace: Path) -> subprocess.CompletedProcess:
    """``colcon build --symlink-install`` of a copy of this package in ``workspace/src``."""
    src = workspace / 'src' / PACKAGE
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name,
                            ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / name)
    env = {k: v for k, v in os.environ.items()
           if k not in ('AMENT_PREFIX_PATH', 'COLCON_PREFIX_PATH', 'PYTHONPATH')}
    return subprocess.run(
        [sys.executable, '-c', COLCON, 'build', '--symlink-install',
         '--event-handlers', 'console_direct-'],
        cwd=workspace, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope='module')
def workspace(tmp_path_factory) -> Path:
    """A colcon workspace with this package built into ``install/``."""
    if importlib.util.find_spec('colcon_core') is None:
        pytest.fail('colcon-core is not installed: run `make setup` (requirements.lock pins '
                    'colcon-core, colcon-ros, colcon-bash and ros-jazzy-ament-package)')
    root = tmp_path_factory.mktemp('colcon_ws')
    done = colcon_build(root)
    assert done.returncode == 0, f'colcon build failed:\n{done.stdout}\n{done.stderr}'
    return root


def sourced(workspace: Path, command: str) -> subprocess.CompletedProcess:
    """Run ``command`` in bash after ``source install/setup.bash``, as a user would."""
    env = {k: v for k, v in os.environ.items()
           if k not in ('AMENT_PREFIX_PATH', 'COLCON_PREFIX_PATH', 'PYTHONPATH')}
    return subprocess.run(['bash', '-c', f'source install/setup.bash && {command}'],
                          cwd=workspace, env=env, capture_output=True, text=True, timeout=300)


def launch_stand_ins(nodes: list[dict]) -> dict[str, types.ModuleType]:
    """Modules ``launch``, ``launch.actions``, ``launch.substitutions``, ``launch_ros.actions``
    with just what experiment.launch.py uses; each ``Node(**kwargs)`` lands in ``nodes``."""
    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    class OpaqueFunction:
        def __init__(self, function):
            self.function = function

    def node(**kwargs):
        nodes.append(kwargs)
        return kwargs

    modules = {name: types.ModuleType(name) for name in
               ('launch', 'launch.actions', 'launch.substitutions', 'launch_ros',
                'launch_ros.actions')}
    modules['launch'].LaunchDescription = list
    modules['launch.actions'].DeclareLaunchArgument = lambda *a, **k: None
    modules['launch.actions'].OpaqueFunction = OpaqueFunction
    modules['launch.substitutions'].LaunchConfiguration = LaunchConfiguration
    modules['launch_ros.actions'].Node = node
    return modules


def launched_nodes(launch_file: Path, experiment: str, output_dir: Path,
                   monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The ``Node(...)`` arguments ``launch_file`` produces for ``experiment``."""
    nodes: list[dict] = []
    for name, module in launch_stand_ins(nodes).items():
        monkeypatch.setitem(sys.modules, name, module)
    namespace: dict = {'__name__': 'experiment_launch'}
    exec(compile(launch_file.read_text(), str(launch_file), 'exec'), namespace)  # noqa: S102
    for entity in namespace['generate_launch_description']():
        if entity is not None and hasattr(entity, 'function'):
            entity.function({'experiment': experiment, 'output_dir': str(output_dir)})
    return nodes


def test_colcon_build_installs_the_ament_layout(workspace: Path):
    prefix = workspace / 'install' / PACKAGE
    assert (prefix / 'share/ament_index/resource_index/packages' / PACKAGE).is_file()
    share = prefix / 'share' / PACKAGE
    assert (share / 'package.xml').is_file()
    for folder in ('launch', 'config', 'urdf'):
        source = {p.relative_to(REPO / folder) for p in (REPO / folder).rglob('*')
                  if p.is_file()}
        installed = {p.relative_to(share / folder) for p in (share / folder).rglob('*')
                     if p.is_file()}
        assert source and source <= installed, f'{folder}/ not installed: {source - installed}'


def test_every_executable_the_launch_file_names_is_in_lib(workspace: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    prefix = workspace / 'install' / PACKAGE
    launch_file = prefix / 'share' / PACKAGE / 'launch' / 'experiment.launch.py'
    named = set()
    for experiment in available_experiments():
        nodes = launched_nodes(launch_file, experiment, tmp_path / experiment, monkeypatch)
        assert nodes, f'the launch file starts no node for {experiment}'
        assert {n['package'] for n in nodes} == {PACKAGE}
        named |= {n['executable'] for n in nodes}
    # node kinds no shipped experiment uses as-is (hardware drivers, camera) too
    named |= {kind.executable for kind in NODE_KINDS.values()}
    lib = prefix / 'lib' / PACKAGE
    missing = sorted(e for e in named if not os.access(lib / e, os.X_OK))
    assert not missing, f'not executable in {lib}: {missing}'


def test_sourced_install_finds_its_package_and_config(workspace: Path):
    probe = ('from ament_index_python.packages import get_package_prefix; '
             'import dexmpc_ros; from dexmpc_ros.core.robot_spec import config_dir; '
             f'print(get_package_prefix("{PACKAGE}")); print(dexmpc_ros.__file__); '
             'print(config_dir())')
    done = sourced(workspace, f'{sys.executable} -c \'{probe}\'')
    assert done.returncode == 0, done.stderr
    prefix, module, config = done.stdout.split()
    install = workspace / 'install' / PACKAGE
    assert Path(prefix) == install
    # --symlink-install links the package to the workspace's source (build/ or src/): the
    # workspace's copy is imported, not this checkout, with all its package data
    assert Path(module).is_relative_to(workspace), module
    package_dir = Path(module).parent
    data = {p.relative_to(REPO / PACKAGE) for p in (REPO / PACKAGE).rglob('*')
            if p.is_file() and p.suffix not in ('.py', '.pyc')}
    missing = sorted(str(p) for p in data if not (package_dir / p).is_file())
    assert data and not missing, f'package data not installed: {missing}'
    # config: the linked source tree's (edits take effect, as --symlink-install promises) or
    # the installed share/ (a copying install)
    assert Path(config) in (workspace / 'src' / PACKAGE / 'config',
                            install / 'share' / PACKAGE / 'config'), config
    listed = sourced(workspace, f'{install}/lib/{PACKAGE}/dexmpc list')
    assert listed.returncode == 0, listed.stderr
    assert {line.split()[0] for line in listed.stdout.splitlines()} == \
        set(available_experiments())
