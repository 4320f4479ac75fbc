"""
The layering rules: nothing outside dexmpc_ros/ros imports rclpy or message packages;
imports point down the layers of docs/architecture.md; no robot folder imports another; no
import circles.

Every non-ros module is imported in a fresh interpreter where rclpy and *_msgs imports
fail; any module that needs them breaks the rule.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

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


# Imports point downward ----------------------------------------------------------------------
#: bottom to top; a module may import its own layer or any layer below (docs/architecture.md)
LAYERS = ('core', 'data', 'wire', 'robots', 'safety', 'learning', 'control', 'runtime', 'ros')
PACKAGE_DIR = Path(dexmpc_ros.__file__).resolve().parent
#: robots/<folder>/: one folder per robot; none imports another's
ROBOT_FOLDERS = tuple(p.name for p in (PACKAGE_DIR / 'robots').iterdir()
                      if (p / '__init__.py').exists())


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the dexmpc_ros modules it imports anywhere (also inside functions)."""
    modules = {_module_name(p): p for p in PACKAGE_DIR.rglob('*.py')}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found = [f'{node.module}.{a.name}' for a in node.names]
                found = [m for m in found if m in modules] or [node.module]
            elif isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            else:
                continue
            targets.update(m for m in found if m.startswith('dexmpc_ros.') and m in modules)
        graph[name] = targets - {name}
    return graph


def layer_of(module: str) -> str:
    parts = module.split('.')
    return parts[1] if len(parts) > 2 else ''


def test_every_package_is_in_a_layer():
    folders = {p.name for p in PACKAGE_DIR.iterdir() if (p / '__init__.py').exists()}
    assert folders == set(LAYERS), folders ^ set(LAYERS)


def test_imports_point_downward():
    wrong = []
    for module, targets in import_graph().items():
        if not layer_of(module):
            continue
        for target in targets:
            if LAYERS.index(layer_of(target)) > LAYERS.index(layer_of(module)):
                wrong.append(f'{module} imports {target} (a higher layer)')
    assert not wrong, '\n'.join(sorted(wrong))


def test_no_robot_folder_imports_another():
    wrong = []
    for module, targets in import_graph().items():
        parts = module.split('.')
        if len(parts) < 4 or parts[1] != 'robots' or parts[2] not in ROBOT_FOLDERS:
            continue
        for target in targets:
            tparts = target.split('.')
            if (tparts[1] == 'robots' and len(tparts) >= 4 and tparts[2] in ROBOT_FOLDERS
                    and tparts[2] != parts[2]):
                wrong.append(f'{module} imports {target}')
    assert not wrong, '\n'.join(sorted(wrong))


def test_no_import_circles():
    """Not even through imports inside functions or TYPE_CHECKING blocks."""
    graph = import_graph()
    circles, index, low, stack, on_stack = [], {}, {}, [], set()

    def visit(v: str) -> None:                # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, circles
