"""
Shared fixtures.

ROS isolation: every test that starts a graph takes ``ros_domain`` — a ROS_DOMAIN_ID
unique within the whole pytest run (xdist workers get disjoint ranges), skipping domains a
`dexmpc up` on this machine holds — so tests run in parallel, beside experiments, and never
hear one another. Discovery stays on localhost.
"""

from __future__ import annotations

import itertools
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from dexmpc_ros.core.robot_spec import JointLimit, RobotSpec, share_dir
from dexmpc_ros.runtime import domains
from dexmpc_ros.runtime.ros_env import ros_environment

REPO = Path(__file__).resolve().parents[1]
ROBOTS = ('widowx', 'hand24', 'roach')

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('MUJOCO_GL', 'egl')

_WORKER = os.environ.get('PYTEST_XDIST_WORKER', 'gw0')
_WORKER_INDEX = int(_WORKER[2:]) if _WORKER[2:].isdigit() else 0
# Domains 1..100 split between up to 4 workers: 25 each, reused round-robin.
_DOMAINS = itertools.cycle(range(1 + 25 * (_WORKER_INDEX % 4), 26 + 25 * (_WORKER_INDEX % 4)))


def pytest_collection_modifyitems(config, items):
    """
    Run every end-to-end test (``e2e``) on one xdist worker, one after another.

    Each starts a whole graph (twin, safety, controllers, recorder: 4-6 busy processes);
    two at once on 2 cores starve each other's twins below their control rate and make
    timing checks fail for the wrong reason. The other worker runs the unit tests
    meanwhile (``make test`` uses ``--dist loadgroup``).
    """
    for item in items:
        if item.get_closest_marker('e2e') is not None:
            item.add_marker(pytest.mark.xdist_group('e2e'))


@pytest.fixture
def ros_domain():
    """
    A ROS_DOMAIN_ID no other concurrently running test, test session, nor a `dexmpc up`
    uses: reserved (runtime/domains.py) for the test's duration.
    """
    first = next(_DOMAINS)
    # This worker's range first, then any other domain of 1..101.
    own = [first + k for k in range(25) if first + k <= 100]
    candidates = own + [d for d in range(1, 102) if d not in own]
    with domains.reserve_free_domain(candidates, f'pytest {_WORKER}') as claim:
        yield claim.domain_id


@pytest.fixture
def widowx_bus():
    """The WidowX's nine servos on an emulated Dynamixel bus (a pty), started."""
    from dexmpc_ros.robots.widowx.emulator import widowx_bus_emulator

    emulator = widowx_bus_emulator().start()
    yield emulator
    emulator.stop()


@pytest.fixture
def ros_env(ros_domain: int) -> dict[str, str]:
    """Environment for ROS subprocesses of this test (own domain, localhost discovery)."""
    return ros_environment(domain_id=ros_domain)


@pytest.fixture
def toy_spec() -> RobotSpec:
    """A 3-joint position robot with round-number limits (one passive joint)."""
    joints = (
        JointLimit('a', -1.0, 1.0, velocity=2.0, max_step=0.1, effort=5.0),
        JointLimit('b', 0.0, 2.0, velocity=1.0, max_step=0.2, effort=5.0),
        JointLimit('c', -0.5, 0.5, velocity=1.0, max_step=0.1, effort=5.0, actuated=False),
    )
    return RobotSpec('toy', joints, 'position', 10.0, (0.0, 1.0, 0.0))


@pytest.fixture
def toy_velocity_spec() -> RobotSpec:
    """A 2-joint velocity-commanded robot (roach-like, continuous joints)."""
    inf = float('inf')
    joints = (JointLimit('left', -inf, inf, velocity=50.0, max_step=20.0, effort=0.1),
              JointLimit('right', -inf, inf, velocity=50.0, max_step=20.0, effort=0.1))
    return RobotSpec('toyv', joints, 'velocity', 10.0, (0.0, 0.0))


def urdf_root(spec: RobotSpec) -> ET.Element:
    """The parsed URDF of a robot (``urdf/<spec.urdf>``)."""
    return ET.parse(share_dir() / 'urdf' / spec.urdf).getroot()
