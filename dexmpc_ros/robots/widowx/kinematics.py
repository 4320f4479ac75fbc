"""
Forward kinematics of the WidowX 250 6DOF (wx250s) by the product of exponentials.

The space-frame screw axes and the home pose ``M`` are Interbotix' published values
(interbotix_xs_modules ``mr_descriptions.py``; see reference/hardware.md §1.3). The base
frame is the robot's ``base_link`` (z up, x forward, at the bottom of the waist); the end
effector frame is ``ee_gripper_link`` (between the finger tips, x along the gripper).

    T(q) = exp([S_1] q_1) ... exp([S_6] q_6) M          (Lynch & Park, eq. 4.14)

Pure numpy and batched over any leading shape, so the safety supervisor and the planners
can call it on (K, 6) samples at once.
"""

from __future__ import annotations

import numpy as np

from dexmpc_ros.robots.kinematics import Kinematics

#: joint order of the screw axes (= the first six joints of ``config/robots/widowx.yaml``)
WX250S_JOINTS = ('waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate')

#: end-effector pose at q = 0 in the base frame [m]
WX250S_M = np.array([[1.0, 0.0, 0.0, 0.458325],
                     [0.0, 1.0, 0.0, 0.0],
                     [0.0, 0.0, 1.0, 0.36065],
                     [0.0, 0.0, 0.0, 1.0]])

#: space-frame screw axes, one row per joint: (omega (3,), v (3,)), v in [m]
WX250S_SCREWS = np.array([
    [0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, -0.11065, 0.0, 0.0],
    [0.0, 1.0, 0.0, -0.36065, 0.0, 0.04975],
    [1.0, 0.0, 0.0, 0.0, 0.36065, 0.0],
    [0.0, 1.0, 0.0, -0.36065, 0.0, 0.29975],
    [1.0, 0.0, 0.0, 0.0, 0.36065, 0.0],
])


def _skew(w: np.ndarray) -> np.ndarray:
    """Skew-symmetric matrices of vectors (..., 3) -> (..., 3, 3)."""
    out = np.zeros(w.shape[:-1] + (3, 3))
    out[..., 0, 1], out[..., 0, 2] = -w[..., 2], w[..., 1]
    out[..., 1, 0], out[..., 1, 2] = w[..., 2], -w[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -w[..., 1], w[..., 0]
    return out


def screw_exp(screw: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """
    Matrix exponentials of revolute screw axes, all joints in one vectorized pass.

    Args:
        screw: (6,) or (J, 6) unit-rotation screw axes (omega, v), ``|omega| = 1``.
        theta: (...) joint angles [rad] for one screw, or (..., J) for J screws.

    Returns:
        (..., 4, 4) or (..., J, 4, 4) homogeneous transforms.
    """
    screw = np.asarray(screw, dtype=np.float64)
    theta = np.asarray(theta, dtype=np.float64)
    w = _skew(screw[..., :3])                      # (J, 3, 3) or (3, 3)
    w2 = w @ w
    v = screw[..., 3:, None]                       # (J, 3, 1)
    s, c = np.sin(theta)[..., None, None], np.cos(theta)[..., None, None]
    t = theta[..., None, None]
    out = np.zeros(theta.shape + (4, 4))
    # Rodrigues: R = I + sin(t) W + (1 - cos(t)) W^2
    out[..., :3, :3] = np.eye(3) + s * w + (1.0 - c) * w2
    # p = (I t + (1 - cos(t)) W + (t - sin(t)) W^2) v
    out[..., :3, 3:] = t * v + (1.0 - c) * (w @ v) + (t - s) * (w2 @ v)
    out[..., 3, 3] = 1.0
    return out


def wx250s_fk(q: np.ndarray) -> np.ndarray:
    """
    End-effector pose of the wx250s in its base frame.

    Args:
        q: (..., 6) arm joint angles [rad] in :data:`WX250S_JOINTS` order.

    Returns:
        (..., 4, 4) pose of ``ee_gripper_link`` in ``base_link`` (translation in m).
    """
    q = np.asarray(q, dtype=np.float64)
    if q.shape[-1] != len(WX250S_JOINTS):
        raise ValueError(f'wx250s_fk expects (..., 6) joint angles, got shape {q.shape}')
    exps = screw_exp(WX250S_SCREWS, q)             # (..., 6, 4, 4)
    pose = exps[..., 0, :, :]
    for i in range(1, len(WX250S_JOINTS)):
        pose = pose @ exps[..., i, :, :]
    return pose @ WX250S_M


def wx250s_ee_position(q: np.ndarray) -> np.ndarray:
    """End-effector position (..., 3) [m] in the base frame for joint angles (..., 6)."""
    return wx250s_fk(q)[..., :3, 3]


#: the arm's forward kinematics, as ``safety.workspace.kinematics: wx250s`` names it
WX250S = Kinematics(WX250S_JOINTS, wx250s_ee_position)
