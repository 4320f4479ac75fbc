"""
MuJoCo twin of the WidowX 250 6DOF (wx250s) with a reach task.

Scene (``assets/widowx.xml``): the arm's ``base_link`` stands on a table whose top is the
world plane z = 0, a 40 mm cube lies on the table, a mocap sphere marks the reach target,
and the fixed camera ``scene`` looks at the workspace. All task positions are given in
the robot base frame [m].

Commands (7,) are position targets in command order: six arm joints [rad] and
``left_finger`` [m]; the right finger follows through an equality constraint
(right = -left), as the real gripper's linkage makes it. Like the servos' velocity limit
(Velocity_Limit = pi rad/s, Profile_Velocity), the setpoint ramps toward the commanded target
by at most ``velocity x timestep`` per physics step, so a target the supervisor passed
(``max_step`` below ``velocity x period``) is reached within the control period.
"""

from __future__ import annotations

from dataclasses import dataclass

from pathlib import Path

import mujoco
import numpy as np

from dexmpc_ros.core.robot_spec import RobotSpec, load_robot_spec
from dexmpc_ros.robots.mujoco_twin import MujocoTwin

#: this robot's MJCF scenes
ASSETS = Path(__file__).resolve().parent / 'assets'
MJCF = ASSETS / 'widowx.xml'

TASK_STATE_NAMES = ['ee_x', 'ee_y', 'ee_z', 'target_x', 'target_y', 'target_z',
                    'cube_x', 'cube_y', 'cube_z']


def reach_reward(ee_xyz: np.ndarray, target_xyz: np.ndarray) -> np.ndarray:
    """
    Reach reward: minus the Euclidean end-effector-to-target distance.

    Args:
        ee_xyz: (..., 3) end-effector positions [m].
        target_xyz: (..., 3) target positions [m] (broadcast against ``ee_xyz``).

    Returns:
        (...) rewards [-m]; 0 is on target.
    """
    diff = np.asarray(ee_xyz, dtype=np.float64) - np.asarray(target_xyz, dtype=np.float64)
    return -np.linalg.norm(diff, axis=-1)


@dataclass(frozen=True)
class ReachTask:
    """
    Reach a random point above the table with the gripper's ``ee_gripper_link``.

    Boxes are in the robot base frame [m]. The default target box lies well inside the
    arm's 0.65 m reach; the cube is placed in front of the arm, in the gripper's reach.

    Attributes:
        target_low: lower corner (x, y, z) of the target box [m].
        target_high: upper corner (x, y, z) of the target box [m].
        cube_low: lower corner (x, y) of the cube's start area on the table [m].
        cube_high: upper corner (x, y) of the cube's start area [m].
    """

    target_low: tuple[float, float, float] = (0.20, -0.20, 0.08)
    target_high: tuple[float, float, float] = (0.40, 0.20, 0.35)
    cube_low: tuple[float, float] = (0.25, -0.10)
    cube_high: tuple[float, float] = (0.35, 0.10)

    def __post_init__(self) -> None:
        for low_name, high_name, size in (('target_low', 'target_high', 3),
                                          ('cube_low', 'cube_high', 2)):
            low, high = getattr(self, low_name), getattr(self, high_name)
            if len(low) != size or len(high) != size:
                raise ValueError(f'{low_name}/{high_name} need {size} values each, '
                                 f'got {low} and {high}')
            if not all(lo <= hi for lo, hi in zip(low, high)):
                raise ValueError(f'{low_name} {low} must be <= {high_name} {high}')
        if self.target_low[2] <= 0.0:
            raise ValueError(f'target_low z {self.target_low[2]} m must be above the table')

    def sample_target(self, rng: np.random.Generator) -> np.ndarray:
        """Draw a target (3,) [m] uniformly in the target box."""
        return rng.uniform(self.target_low, self.target_high)

    def sample_cube_xy(self, rng: np.random.Generator) -> np.ndarray:
        """Draw the cube's start position (2,) [m] on the table."""
        return rng.uniform(self.cube_low, self.cube_high)

    def reward(self, ee_xyz: np.ndarray, target_xyz: np.ndarray) -> np.ndarray:
        """Vectorized reward, see :func:`reach_reward`."""
        return reach_reward(ee_xyz, target_xyz)


TASKS = {'reach': ReachTask}


class WidowXTwin(MujocoTwin):
    """
    The wx250s on a table with a cube and a reach target.

    Args:
        task: task name, one of :data:`TASKS`.
        seed: seed of the twin's random generator (None: fresh entropy); later
            ``reset(None)`` calls continue this generator.
        spec: robot spec (default: ``load_robot_spec('widowx')``).
    """

    SNAPSHOT_ATTRS = ('_goal',)

    def __init__(self, task: str = 'reach', seed: int | None = None,
                 spec: RobotSpec | None = None) -> None:
        if task not in TASKS:
            raise ValueError(f'widowx: unknown task {task!r}; available: '
                             f'{", ".join(sorted(TASKS))}')
        spec = spec if spec is not None else load_robot_spec('widowx')
        model = mujoco.MjModel.from_xml_path(str(MJCF))
        super().__init__(spec, model, camera='scene')
        self.task_name = task
        self.task = TASKS[task]()
        self._rng = np.random.default_rng(seed)

        names = spec.command_names
        self._actuator_ids = np.array(
            [self._require_id(mujoco.mjtObj.mjOBJ_ACTUATOR, name) for name in names])
        self._ctrl_low, self._ctrl_high = model.actuator_ctrlrange[self._actuator_ids].T.copy()
        self._ee_site = self._require_id(mujoco.mjtObj.mjOBJ_SITE, 'ee')
        self._base_body = self._require_id(mujoco.mjtObj.mjOBJ_BODY, 'base_link')
        cube_joint = self._require_id(mujoco.mjtObj.mjOBJ_JOINT, 'cube')
        self._cube_qpos = int(model.jnt_qposadr[cube_joint])
        self._cube_body = self._require_id(mujoco.mjtObj.mjOBJ_BODY, 'cube')
        target_body = self._require_id(mujoco.mjtObj.mjOBJ_BODY, 'target')
        self._target_mocap = int(model.body_mocapid[target_body])
        self._cube_half = float(model.geom_size[
            self._require_id(mujoco.mjtObj.mjOBJ_GEOM, 'cube')][2])
        self._ramp = spec.limits_array('velocity') * model.opt.timestep  # per physics step
        self._goal = spec.default_command.copy()
        self._target = np.zeros(3)
        self.reset()        # first episode from self._rng, so reset(None) never repeats it

    def _require_id(self, kind: mujoco.mjtObj, name: str) -> int:
        idx = mujoco.mj_name2id(self.model, kind, name)
        if idx < 0:
            raise ValueError(f'widowx: {kind.name} {name!r} missing from {MJCF}')
        return int(idx)

    # Twin interface -------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """Default pose at rest, cube on the table, a new target (seeded if ``seed``)."""
        rng = self._rng if seed is None else np.random.default_rng(seed)
        self.reset_physics(np.asarray(self.spec.default_pose))
        cube_xy = self.task.sample_cube_xy(rng)
        cube_world = self._base_to_world(np.array([cube_xy[0], cube_xy[1], 0.0]))
        cube_world[2] += self._cube_half
        self.data.qpos[self._cube_qpos:self._cube_qpos + 3] = cube_world
        self.data.qpos[self._cube_qpos + 3:self._cube_qpos + 7] = (1.0, 0.0, 0.0, 0.0)
        self._target = self.task.sample_target(rng)
        self.data.mocap_pos[self._target_mocap] = self._base_to_world(self._target)
        self._goal = self.spec.default_command.copy()
        self.data.ctrl[self._actuator_ids] = self._goal
        mujoco.mj_forward(self.model, self.data)

    def apply_command(self, values: np.ndarray) -> None:
        """
        Set position targets (7,): six arm joints [rad], ``left_finger`` [m].

        Targets outside a joint's range are clamped to it; the servo setpoint slews toward
        the target at the joint's velocity limit (see :meth:`step`).

        Raises:
            ValueError: wrong length or non-finite values.
        """
        values = self.checked_command(values)
        self._goal = np.clip(values, self._ctrl_low, self._ctrl_high)

    def step(self) -> None:
        """
        Simulate one control period, the setpoints ramping toward the goal at the velocity limit.

        Like the servos' profile velocity, each physics step moves a setpoint by at most
        ``velocity x timestep``, so the joints follow a ramp, not a jump (which a stiff
        position servo would chase faster than its velocity limit).
        """
        ids = self._actuator_ids
        for _ in range(self.n_substeps):
            ctrl = self.data.ctrl[ids]
            self.data.ctrl[ids] = ctrl + np.clip(self._goal - ctrl, -self._ramp, self._ramp)
            mujoco.mj_step(self.model, self.data)

    def task_state(self) -> tuple[list[str], np.ndarray]:
        """EE, target and cube positions in the base frame [m] (see TASK_STATE_NAMES)."""
        cube = self._world_to_base(self.data.xpos[self._cube_body])
        values = np.concatenate([self.ee_position(), self._target, cube])
        return list(TASK_STATE_NAMES), values

    def reward(self) -> float:
        """Minus the EE-to-target distance [m] at the current state."""
        return float(self.task.reward(self.ee_position(), self._target))

    # WidowX-specific views ------------------------------------------------------------
    def ee_position(self) -> np.ndarray:
        """Position (3,) [m] of ``ee_gripper_link`` in the robot base frame."""
        return self._world_to_base(self.data.site_xpos[self._ee_site])

    @property
    def target(self) -> np.ndarray:
        """Current reach target (3,) [m] in the base frame."""
        return self._target.copy()

    def _world_to_base(self, point_world: np.ndarray) -> np.ndarray:
        rotation = self.data.xmat[self._base_body].reshape(3, 3)
        return rotation.T @ (point_world - self.data.xpos[self._base_body])

    def _base_to_world(self, point_base: np.ndarray) -> np.ndarray:
        # Uses the model's base pose, valid before mj_forward (the base is welded to the world).
        rotation = np.empty(9)
        mujoco.mju_quat2Mat(rotation, self.model.body_quat[self._base_body])
        return rotation.reshape(3, 3) @ point_base + self.model.body_pos[self._base_body]
