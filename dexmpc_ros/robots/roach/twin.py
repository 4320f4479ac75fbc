"""
MuJoCo twin of the VelociRoACH-like millirobot on a flat floor of settable friction.

Scene (``assets/roach.xml``): a 10 cm, 37 g hexapod with two leg cranks (``left_legs``,
``right_legs``), each driving its side's three whegs in an alternating tripod; a mocap disc
marks the task target; the camera ``scene`` follows the robot from behind and above.

Commands (2,) are crank angular velocity setpoints [rad/s] (one crank revolution = one
stride), held by velocity servos bounded by the spec's effort limit. Measured on a 2-core
CPU: at 4 rev/s on both sides the robot runs 0.24 m/s (0.71 m in 3 s from rest) with
~0.01 rad of yaw drift; unequal sides skid-steer (4 vs 2 rev/s: 1.2-1.6 rad/s of yaw rate).
One control step costs ~0.5 ms of CPU (50 physics steps of 2 ms).

Friction: the floor's sliding friction ``friction`` is the contact friction (the floor has
contact priority). The whegs roll, so in steady running they need little traction: between
0.1 and 2 the straight-line speed is the same, while at 0.02 the feet slip and the robot
covers ~20 % less ground in 3 s at 4 rev/s (~50 % at 9 rev/s), accelerates and turns more
slowly. Terrains that should differ must therefore span low frictions (e.g. 0.02, 0.1, 1).

Frames: ``odom()`` gives the ``base_link`` origin in the world (odom) frame, orientation as
a quaternion (x, y, z, w), and the body-frame linear and angular velocity (REP-105). The
episode starts at the world origin heading +x, so task goals in the world frame are also in
the robot's start frame.
"""

from __future__ import annotations

import math
from typing import Any

from pathlib import Path

import mujoco
import numpy as np

from dexmpc_ros.core.robot_spec import RobotSpec, load_robot_spec
from dexmpc_ros.robots.twin import BodyPose
from dexmpc_ros.robots.mujoco_twin import MujocoTwin, body_xy_heading
from dexmpc_ros.robots.roach.tasks import BASE_STATE_NAMES, TASKS, make_task

#: this robot's MJCF scenes
ASSETS = Path(__file__).resolve().parent / 'assets'

MJCF = ASSETS / 'roach.xml'


class RoachTwin(MujocoTwin):
    """
    The roach on a flat floor with a waypoint, straight-line or figure-8 task.

    Args:
        task: task name, one of :data:`~dexmpc_ros.robots.roach.tasks.TASKS`.
        seed: seed of the twin's random generator (None: fresh entropy); later
            ``reset(None)`` calls continue this generator.
        friction: sliding friction coefficient of the floor (> 0); see :attr:`friction`.
        spec: robot spec (default: ``load_robot_spec('roach')``).
        **task_options: options of the task's config (e.g. ``waypoints=[[0.5, 0.2]]``,
            ``count=3`` for ``waypoints``; ``size``, ``period_s`` for ``figure8``).

    Raises:
        ValueError: unknown task or task option, bad friction, or a spec that does not
            match the model.
    """

    SNAPSHOT_ATTRS = ('task',)

    def __init__(self, task: str = 'waypoints', seed: int | None = None, friction: float = 1.0,
                 spec: RobotSpec | None = None, **task_options: Any) -> None:
        if task not in TASKS:
            raise ValueError(f'roach: unknown task {task!r}; available: '
                             f'{", ".join(sorted(TASKS))}')
        spec = spec if spec is not None else load_robot_spec('roach')
        if spec.command_interface != 'velocity':
            raise ValueError(f'roach: the twin takes velocity commands, spec {spec.name!r} '
                             f'has command_interface {spec.command_interface!r}')
        model = mujoco.MjModel.from_xml_path(str(MJCF))
        super().__init__(spec, model, camera='scene')
        self.task_name = task
        self.task = make_task(task, **task_options)
        self._rng = np.random.default_rng(seed)

        self._actuator_ids = np.array([self._require_id(mujoco.mjtObj.mjOBJ_ACTUATOR, name)
                                       for name in spec.command_names])
        self._speed_limit = spec.limits_array('velocity')
        self._base_body = self._require_id(mujoco.mjtObj.mjOBJ_BODY, 'base_link')
        root = self._require_id(mujoco.mjtObj.mjOBJ_JOINT, 'root')
        self._root_qpos = int(model.jnt_qposadr[root])
        self._root_qvel = int(model.jnt_dofadr[root])
        self._floor = self._require_id(mujoco.mjtObj.mjOBJ_GEOM, 'floor')
        self._target_mocap = int(model.body_mocapid[
            self._require_id(mujoco.mjtObj.mjOBJ_BODY, 'target')])
        self._couplings = self._leg_couplings()
        self.friction = friction
        self.reset()        # first episode from self._rng, so reset(None) never repeats it

    def _require_id(self, kind: mujoco.mjtObj, name: str) -> int:
        idx = mujoco.mj_name2id(self.model, kind, name)
        if idx < 0:
            raise ValueError(f'roach: {kind.name} {name!r} missing from {MJCF}')
        return int(idx)

    def _leg_couplings(self) -> list[tuple[int, int, np.ndarray]]:
        """(leg qpos address, crank qpos address, polynomial coefficients) per joint equality."""
        couplings = []
        for eq in range(self.model.neq):
            if self.model.eq_type[eq] == mujoco.mjtEq.mjEQ_JOINT:
                leg, crank = self.model.eq_obj1id[eq], self.model.eq_obj2id[eq]
                couplings.append((int(self.model.jnt_qposadr[leg]),
                                  int(self.model.jnt_qposadr[crank]),
                                  self.model.eq_data[eq, :5].copy()))
        return couplings

    # Terrain ------------------------------------------------------------------------------
    @property
    def friction(self) -> float:
        """Sliding friction coefficient of the floor (the contact friction)."""
        return float(self.model.geom_friction[self._floor, 0])

    @friction.setter
    def friction(self, value: float) -> None:
        value = float(value)
        if not (value > 0.0 and math.isfinite(value)):
            raise ValueError(f'roach: friction must be finite and > 0, got {value}')
        self.model.geom_friction[self._floor, 0] = value

    # Twin interface -----------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """Robot at rest at the origin heading +x, legs at their reset phase, a new goal."""
        rng = self._rng if seed is None else np.random.default_rng(seed)
        self.reset_physics(np.asarray(self.spec.default_pose))
        for leg, crank, coef in self._couplings:
            # Legs start on their coupling (leg = poly(crank)), not fighting it.
            self.data.qpos[leg] = np.polynomial.polynomial.polyval(self.data.qpos[crank], coef)
        self.data.ctrl[self._actuator_ids] = 0.0
        mujoco.mj_forward(self.model, self.data)
        self.task.reset(rng, self.planar_pose())
        self._show_target()

    def apply_command(self, values: np.ndarray) -> None:
        """
        Set crank velocity setpoints (2,) [rad/s], command order (left, right).

        Values beyond the velocity limit are clamped to it.

        Raises:
            ValueError: wrong shape or non-finite values.
        """
        values = self.checked_command(values)
        self.data.ctrl[self._actuator_ids] = np.clip(values, -self._speed_limit,
                                                     self._speed_limit)

    def step(self) -> None:
        """Simulate one control period, then score it with the task."""
        super().step()
        # mj_step leaves positions/velocities of bodies (xpos, xmat, cvel) one physics step
        # behind qpos/qvel; recompute them so odom, task_state and reward describe one state.
        mujoco.mj_forward(self.model, self.data)
        self.task.update(self.planar_pose(), float(self.data.time))
        self._show_target()

    def task_state(self) -> tuple[list[str], np.ndarray]:
        """
        ``x, y, cos_yaw, sin_yaw, target_x, target_y`` [m, m, -, -, m, m] plus the task's extras.

        The heading is given as cos/sin of the yaw so it never wraps (see
        :mod:`~dexmpc_ros.robots.roach.tasks`).
        """
        x, y, yaw = self.planar_pose()
        values = np.concatenate([[x, y, math.cos(yaw), math.sin(yaw)], self.task.target(),
                                 self.task.extras()])
        return [*BASE_STATE_NAMES, *self.task.extra_names], values

    def reward(self) -> float:
        """Reward of the last control step under the current task."""
        return self.task.last_reward

    def done(self) -> bool:
        """True when the task is complete (e.g. the last waypoint reached)."""
        return self.task.done()

    def odom(self) -> BodyPose:
        """``base_link`` pose in the world frame and its twist in the body frame."""
        qpos = self.data.qpos[self._root_qpos:self._root_qpos + 7]
        qvel = self.data.qvel[self._root_qvel:self._root_qvel + 6]
        rotation = self.data.xmat[self._base_body].reshape(3, 3)
        # Free joint: qvel[:3] is the world-frame velocity of the body origin, qvel[3:] the
        # angular velocity already in the body frame.
        return BodyPose(position=qpos[:3].copy(),
                        orientation_xyzw=np.r_[qpos[4:7], qpos[3]],
                        linear=rotation.T @ qvel[:3],
                        angular=qvel[3:6].copy())

    # Roach-specific views -----------------------------------------------------------------
    def planar_pose(self) -> np.ndarray:
        """(x [m], y [m], yaw [rad]) of ``base_link`` in the world frame."""
        return np.array(body_xy_heading(self.data, self._base_body))

    def up_vector(self) -> np.ndarray:
        """The body's z axis (3,) in the world frame (z component < 0: upside down)."""
        return self.data.xmat[self._base_body].reshape(3, 3)[:, 2].copy()

    def _show_target(self) -> None:
        self.data.mocap_pos[self._target_mocap, :2] = self.task.target()
