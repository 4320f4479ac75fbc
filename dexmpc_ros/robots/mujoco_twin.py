"""
Shared MuJoCo plumbing for the twins: model loading, joint addressing, stepping, rendering.

A concrete twin subclasses :class:`MujocoTwin`, passes its MJCF and spec, and writes
only what is specific to it: how a command maps to ``data.ctrl``, the task state and
the reward (dm_control's Physics/Task split, kept light).
"""

from __future__ import annotations

import copy
import logging
import math

import mujoco
import numpy as np

from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.robots.twin import JointReading, Twin

log = logging.getLogger(__name__)


class MujocoTwin(Twin):
    """
    Base class: one ``mujoco.MjModel`` advanced by whole control periods.

    Args:
        spec: robot spec; every spec joint must exist in the model under
            ``joint_map.get(name, name)``.
        model: the compiled MuJoCo model.
        joint_map: spec joint name -> MJCF joint name, where they differ.
        camera: MJCF camera used by :meth:`render` (None: the free camera).
    """

    def __init__(self, spec: RobotSpec, model: mujoco.MjModel,
                 joint_map: dict[str, str] | None = None, camera: str | None = None) -> None:
        self.spec = spec
        self.model = model
        self.data = mujoco.MjData(model)
        self._camera = camera
        self._renderer: mujoco.Renderer | None = None
        self._render_failed = False
        self.n_substeps = max(1, int(round(spec.period_s / model.opt.timestep)))
        if not math.isclose(self.n_substeps * model.opt.timestep, spec.period_s, rel_tol=1e-6):
            raise ValueError(f'{spec.name}: control period {spec.period_s} s is not a multiple '
                             f'of the MuJoCo timestep {model.opt.timestep} s')
        joint_map = joint_map or {}
        self.qpos_adr = np.empty(len(spec.joints), dtype=np.int64)
        self.qvel_adr = np.empty(len(spec.joints), dtype=np.int64)
        for i, joint in enumerate(spec.joints):
            mj_name = joint_map.get(joint.name, joint.name)
            jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, mj_name)
            if jid < 0:
                raise ValueError(f'{spec.name}: joint {mj_name!r} (spec {joint.name!r}) not '
                                 'in the MuJoCo model')
            self.qpos_adr[i] = model.jnt_qposadr[jid]
            self.qvel_adr[i] = model.jnt_dofadr[jid]
        self._time_offset = 0.0

    # Twin interface -------------------------------------------------------------------
    @property
    def time(self) -> float:
        """Simulated time since construction [s], continuous across resets."""
        return self._time_offset + float(self.data.time)

    def step(self) -> None:
        """Advance ``n_substeps`` MuJoCo steps (one control period)."""
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)

    def joints(self) -> JointReading:
        """Joint positions/velocities from qpos/qvel; effort from actuator forces."""
        return JointReading(
            position=self.data.qpos[self.qpos_adr].copy(),
            velocity=self.data.qvel[self.qvel_adr].copy(),
            effort=self.data.qfrc_actuator[self.qvel_adr].copy(),
        )

    def checked_command(self, values: np.ndarray) -> np.ndarray:
        """
        Return ``values`` as float64 (m,) after checking it is a whole, finite command.

        Raises:
            ValueError: wrong shape or non-finite values (the twin never guesses).
        """
        values = np.asarray(values, dtype=np.float64)
        expected = (len(self.spec.actuated_joints),)
        if values.shape != expected:
            raise ValueError(f'{self.spec.name}: command needs shape {expected}, '
                             f'got {values.shape}')
        if not np.all(np.isfinite(values)):
            raise ValueError(f'{self.spec.name}: command has non-finite values {values}')
        return values

    #: Python-side attributes that change while stepping, saved by :meth:`snapshot`.
    SNAPSHOT_ATTRS: tuple[str, ...] = ()

    def snapshot(self) -> tuple[mujoco.MjData, dict]:
        """Everything stepping changes (MuJoCo data + :attr:`SNAPSHOT_ATTRS`), for restore()."""
        return (copy.copy(self.data),
                {name: copy.deepcopy(getattr(self, name)) for name in self.SNAPSHOT_ATTRS})

    def restore(self, snapshot: tuple[mujoco.MjData, dict]) -> None:
        """Return to a :meth:`snapshot` (the ground-truth planner model rolls out from it)."""
        data, attrs = snapshot
        mujoco.mj_copyData(self.data, self.model, data)
        for name, value in attrs.items():
            setattr(self, name, copy.deepcopy(value))

    def reset_physics(self, qpos_joints: np.ndarray | None = None) -> None:
        """
        Reset MuJoCo data to the model's initial state, then set spec joints.

        Keeps :attr:`time` monotonic across episodes.
        """
        self._time_offset += float(self.data.time)
        mujoco.mj_resetData(self.model, self.data)
        if qpos_joints is not None:
            self.data.qpos[self.qpos_adr] = qpos_joints
        mujoco.mj_forward(self.model, self.data)

    def render(self, width: int = 320, height: int = 240) -> np.ndarray | None:
        """
        Render RGB (height, width, 3) uint8 offscreen; None if no GL backend works.

        Needs ``MUJOCO_GL=egl`` or ``osmesa`` on a headless machine.
        """
        if self._render_failed:
            return None
        try:
            if self._renderer is None or (self._renderer.width, self._renderer.height) != (
                    width, height):
                if self._renderer is not None:
                    self._renderer.close()
                self._renderer = mujoco.Renderer(self.model, height=height, width=width)
            if self._camera is None:
                self._renderer.update_scene(self.data)
            else:
                self._renderer.update_scene(self.data, camera=self._camera)
            return self._renderer.render()
        except Exception as exc:  # noqa: BLE001 - GL backends fail in many ways
            self._render_failed = True
            log.warning('offscreen rendering unavailable (%s); set MUJOCO_GL=egl or osmesa',
                        exc)
            return None

    def close(self) -> None:
        """Free the offscreen renderer."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def body_xy_heading(data: mujoco.MjData, body_id: int) -> tuple[float, float, float]:
    """Planar pose (x [m], y [m], yaw [rad]) of a body in the world frame."""
    x, y = data.xpos[body_id][:2]
    rot = data.xmat[body_id].reshape(3, 3)
    return float(x), float(y), float(math.atan2(rot[1, 0], rot[0, 0]))


def wrap_angle(angle: np.ndarray | float) -> np.ndarray | float:
    """Wrap an angle to (-pi, pi]."""
    return np.arctan2(np.sin(angle), np.cos(angle))
