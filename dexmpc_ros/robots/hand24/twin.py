"""
MuJoCo twin of the 24-DoF Shadow-style hand with PDDM's valve and Baoding tasks.

Hand model: the Shadow hand shipped inside the installed ``gymnasium-robotics`` package,
``gymnasium_robotics/envs/assets/hand/robot.xml`` (kinematic tree, joints, collision and
visual geoms) with ``shared.xml`` (defaults, contact pairs, the coupling tendons, the 20
position actuators) and ``shared_asset.xml`` (meshes, materials); meshes in
``envs/assets/stls/hand``. The package is located with :func:`importlib.util.find_spec`
(without importing it) and our scene templates (``assets/hand_valve.xml``,
``assets/hand_baoding.xml``) include those files in place through absolute paths
substituted at run time; nothing is copied or downloaded.

Naming: the spec uses the real Shadow hand's names (``config/robots/hand24.yaml``);
gymnasium's are shifted by one joint index: Shadow ``XXJn`` is MuJoCo ``robot0:XXJ(n-1)``
(``FFJ1`` distal = ``robot0:FFJ0``, ``LFJ5`` = ``robot0:LFJ4``, ``THJ5`` = ``robot0:THJ4``,
``WRJ2`` = ``robot0:WRJ1``), and the actuator of joint ``robot0:X`` is ``robot0:A_X``.
:func:`mujoco_joint_name` is the one place that applies the shift. Spec joint order equals
the MuJoCo qpos order, so the 20 commands map one to one onto gymnasium's actuators.

Control: commands (20,) are position targets [rad] in ``spec.command_names`` order, set
directly as the actuator setpoints (clipped to their ctrlrange); the four distal joints
follow J2 through the model's tendons. One control step = 0.1 s = 50 MuJoCo steps of 2 ms.
The real hand's joint controllers hold the hand up against gravity; the model's P-only
servos (kp 1-5) cannot, so the hand's bodies are gravity-compensated (``body_gravcomp``),
which keeps commanded targets reached within a few mrad.
"""

from __future__ import annotations

import importlib.util
import string
from functools import cache
from pathlib import Path

import mujoco
import numpy as np

from dexmpc_ros.core.robot_spec import RobotSpec, load_robot_spec
from dexmpc_ros.robots.hand24.tasks import (BAODING_STATE_NAMES, VALVE_STATE_NAMES, BaodingTask,
                                            ValveTask, baoding_dropped, make_task,
                                            valve_angle_error)
from dexmpc_ros.robots.mujoco_twin import MujocoTwin

#: this robot's MJCF scenes
ASSETS = Path(__file__).resolve().parent / 'assets'
SCENES = {'valve': ASSETS / 'hand_valve.xml', 'baoding': ASSETS / 'hand_baoding.xml'}
HAND_PREFIX = 'robot0:'
SETTLE_S = 1.0          # [s] the Baoding balls settle this long when the twin is built


def mujoco_joint_name(shadow_name: str) -> str:
    """Gymnasium MJCF joint of a Shadow joint: ``FFJ1`` -> ``robot0:FFJ0`` (index - 1)."""
    finger, index = shadow_name[:-1], shadow_name[-1]
    if not (finger.endswith('J') and index.isdigit() and int(index) >= 1):
        raise ValueError(f'hand24: {shadow_name!r} is not a Shadow joint name like FFJ3')
    return f'{HAND_PREFIX}{finger}{int(index) - 1}'


def mujoco_actuator_name(shadow_name: str) -> str:
    """Gymnasium position actuator of a Shadow joint: ``FFJ2`` -> ``robot0:A_FFJ1``."""
    return mujoco_joint_name(shadow_name).replace(HAND_PREFIX, f'{HAND_PREFIX}A_', 1)


@cache
def gymnasium_hand_dir() -> Path:
    """
    Directory of gymnasium-robotics' Shadow hand MJCF (``envs/assets/hand``).

    Raises:
        FileNotFoundError: gymnasium-robotics is not installed (``pip install
            gymnasium-robotics``) or lacks the hand model.
    """
    spec = importlib.util.find_spec('gymnasium_robotics')
    if spec is None or spec.origin is None:
        raise FileNotFoundError('hand24 twin needs the gymnasium-robotics package for its '
                                'Shadow hand model: pip install gymnasium-robotics')
    hand = Path(spec.origin).parent / 'envs' / 'assets' / 'hand'
    missing = [n for n in ('robot.xml', 'shared.xml', 'shared_asset.xml')
               if not (hand / n).is_file()]
    if missing:
        raise FileNotFoundError(f'gymnasium-robotics at {hand.parents[2]} lacks {missing}')
    return hand


def scene_xml(task: str) -> str:
    """MJCF text of a task scene with the gymnasium hand's absolute paths filled in."""
    hand = gymnasium_hand_dir()
    template = string.Template(SCENES[task].read_text())
    return template.substitute(HAND_DIR=hand.as_posix(),
                               MESH_DIR=(hand.parent / 'stls' / 'hand').as_posix())


def load_scene(task: str) -> mujoco.MjModel:
    """Compile a task scene; the hand's bodies get gravity compensation (see module doc)."""
    if task not in SCENES:
        raise ValueError(f'hand24: no scene for task {task!r}; available: {", ".join(SCENES)}')
    scene = mujoco.MjSpec.from_string(scene_xml(task))
    # Set before compiling: MuJoCo only computes gravity compensation for bodies that
    # have it at compile time (model.ngravcomp).
    for body in scene.bodies:
        if body.name.startswith(HAND_PREFIX):
            body.gravcomp = 1.0
    return scene.compile()


class HandTwin(MujocoTwin):
    """
    The hand with a valve below it (palm down) or two Baoding balls in its palm (palm up).

    Args:
        task: ``valve`` or ``baoding`` (:mod:`~dexmpc_ros.robots.hand24.tasks`).
        seed: seed of the twin's random generator (None: fresh entropy); later
            ``reset(None)`` calls continue this generator.
        spec: robot spec (default: ``load_robot_spec('hand24')``).
        **task_options: fields of the task's config (:class:`ValveTask`,
            :class:`BaodingTask`), e.g. ``target_low`` / ``target_high`` for the valve.
    """

    SNAPSHOT_ATTRS = ('_steps',)

    def __init__(self, task: str = 'valve', seed: int | None = None,
                 spec: RobotSpec | None = None, **task_options: object) -> None:
        self.task_name = task
        self.task = make_task(task, **task_options)
        spec = spec if spec is not None else load_robot_spec('hand24')
        model = load_scene(task)
        super().__init__(spec, model, joint_map={n: mujoco_joint_name(n)
                                                 for n in spec.joint_names}, camera='scene')
        self._rng = np.random.default_rng(seed)
        self._actuator_ids = np.array([self._require_id(mujoco.mjtObj.mjOBJ_ACTUATOR,
                                                        mujoco_actuator_name(name))
                                       for name in spec.command_names])
        self._ctrl_low, self._ctrl_high = model.actuator_ctrlrange[self._actuator_ids].T.copy()
        self._wrist_flexion = spec.joint_names.index('WRJ1')
        self._steps = 0
        self._target_angle = 0.0
        if isinstance(self.task, ValveTask):
            valve = self._require_id(mujoco.mjtObj.mjOBJ_JOINT, 'valve_angle')
            self._valve_qpos = int(model.jnt_qposadr[valve])
            self._valve_dof = int(model.jnt_dofadr[valve])
            self._target_mocap = self._mocap_id('valve_target')
        else:
            self._ball_qpos = [int(model.jnt_qposadr[self._require_id(
                mujoco.mjtObj.mjOBJ_JOINT, name)]) for name in ('ball1', 'ball2')]
            self._target_mocaps = [self._mocap_id('target1'), self._mocap_id('target2')]
            self._ball_rest, palm_z = self._settle_balls()
            #: a ball centre below this height [m] has dropped (palm box centre - depth)
            self.drop_z = palm_z - self.task.drop_depth
        self.reset()        # first episode from self._rng, so reset(None) never repeats it

    def _require_id(self, kind: mujoco.mjtObj, name: str) -> int:
        idx = mujoco.mj_name2id(self.model, kind, name)
        if idx < 0:
            raise ValueError(f'hand24: {kind.name} {name!r} missing from the '
                             f'{self.task_name} scene {SCENES[self.task_name]}')
        return int(idx)

    def _mocap_id(self, body_name: str) -> int:
        return int(self.model.body_mocapid[self._require_id(mujoco.mjtObj.mjOBJ_BODY,
                                                            body_name)])

    def _settle_balls(self) -> tuple[np.ndarray, float]:
        """
        Drop the balls onto the palm held at the default pose (on scratch data).

        Returns:
            The balls' resting qpos (2, 7) and the palm box centre's height [m].
        """
        data = mujoco.MjData(self.model)
        data.qpos[self.qpos_adr] = self.spec.default_pose
        data.ctrl[self._actuator_ids] = self.spec.default_command
        mujoco.mj_step(self.model, data, nstep=int(round(SETTLE_S / self.model.opt.timestep)))
        mujoco.mj_forward(self.model, data)
        palm = self._require_id(mujoco.mjtObj.mjOBJ_GEOM, f'{HAND_PREFIX}C_palm0')
        rest = np.array([data.qpos[adr:adr + 7] for adr in self._ball_qpos])
        return rest, float(data.geom_xpos[palm][2])

    # Twin interface -------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """Default pose at rest; valve at 0 with a new target, or balls resting in the palm."""
        rng = self._rng if seed is None else np.random.default_rng(seed)
        self.reset_physics(np.asarray(self.spec.default_pose))
        self.data.ctrl[self._actuator_ids] = self.spec.default_command
        self._steps = 0
        if isinstance(self.task, ValveTask):
            self._target_angle = self.task.sample_target(rng)
            half = self._target_angle / 2.0
            self.data.mocap_quat[self._target_mocap] = (np.cos(half), 0.0, 0.0, np.sin(half))
        else:
            for adr, rest in zip(self._ball_qpos, self._ball_rest):
                self.data.qpos[adr:adr + 7] = rest
            self._place_targets()
        mujoco.mj_forward(self.model, self.data)

    def apply_command(self, values: np.ndarray) -> None:
        """
        Set the 20 position targets [rad] (command order), clipped to the actuator ranges.

        Raises:
            ValueError: wrong length or non-finite values.
        """
        values = self.checked_command(values)
        self.data.ctrl[self._actuator_ids] = np.clip(values, self._ctrl_low, self._ctrl_high)

    def step(self) -> None:
        """Simulate one control period; Baoding targets advance by one step."""
        super().step()
        self._steps += 1
        if isinstance(self.task, BaodingTask):
            self._place_targets()

    def task_state(self) -> tuple[list[str], np.ndarray]:
        """Valve: angle, velocity, target, wrapped error; Baoding: balls xyz, targets xy."""
        if isinstance(self.task, ValveTask):
            angle = float(self.data.qpos[self._valve_qpos])
            values = np.array([angle, self.data.qvel[self._valve_dof], self._target_angle,
                               valve_angle_error(angle, self._target_angle)])
            return list(VALVE_STATE_NAMES), values
        target1, target2 = self.task.targets(self._steps)
        values = np.concatenate([*self.ball_positions(), target1, target2])
        return list(BAODING_STATE_NAMES), values

    def reward(self) -> float:
        """The task's reward at the current state (tasks.reward_valve / _baoding)."""
        _, values = self.task_state()
        if isinstance(self.task, ValveTask):
            return float(self.task.reward(values[3]))
        wrist = self.data.qpos[self.qpos_adr[self._wrist_flexion]]
        return float(self.task.reward(values[0:3], values[3:6], values[6:8], values[8:10],
                                      wrist, self.drop_z))

    def done(self) -> bool:
        """Baoding: a ball dropped below ``drop_z``; the valve task never ends early."""
        if isinstance(self.task, ValveTask):
            return False
        ball1, ball2 = self.ball_positions()
        return bool(baoding_dropped(ball1, ball2, self.drop_z))

    # Hand-specific views --------------------------------------------------------------
    @property
    def target_angle(self) -> float:
        """Valve target [rad] (0 for Baoding)."""
        return self._target_angle

    @property
    def steps(self) -> int:
        """Control steps since the last reset."""
        return self._steps

    def ball_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Baoding ball centres (3,) each [m], world frame."""
        # qpos, not xpos: xpos lags one MuJoCo step behind after mj_step.
        return tuple(self.data.qpos[adr:adr + 3].copy() for adr in self._ball_qpos)

    def _place_targets(self) -> None:
        """Move the visual target markers to the current Baoding targets."""
        height = float(np.mean(self._ball_rest[:, 2]))
        for mocap, xy in zip(self._target_mocaps, self.task.targets(self._steps)):
            self.data.mocap_pos[mocap] = (xy[0], xy[1], height)
