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
    """Skew-symmetric matrix of a unit vector (3,) -> (3, 3)."""
    return np.array([[0.0, -w[2], w[1]],
                     [w[2], 0.0, -w[0]],
                     [-w[1], w[0], 0.0]])


def screw_exp(screw: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """
    Matrix exponential of a revolute screw axis.

    Args:
        screw: (6,) unit-rotation screw axis (omega, v), ``|omega| = 1``.
        theta: (...) joint angles [rad].

    Returns:
        (..., 4, 4) homogeneous transforms.
    """
    omega, v = screw[:3], screw[3:]
    w = _skew(omega)
    w2 = w @ w
    theta = np.asarray(theta, dtype=np.float64)
    s, c = np.sin(theta)[..., None, None], np.cos(theta)[..., None, None]
    t = theta[..., None, None]
    out = np.zeros(theta.shape + (4, 4))
    # Rodrigues: R = I + sin(t) W + (1 - cos(t)) W^2
    out[..., :3, :3] = np.eye(3) + s * w + (1.0 - c) * w2
    # p = (I t + (1 - cos(t)) W + (t - sin(t)) W^2) v
    g = np.eye(3) * t + (1.0 - c) * w + (t - s) * w2
    out[..., :3, 3] = g @ v
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
    pose = np.broadcast_to(np.eye(4), q.shape[:-1] + (4, 4))
    for i, screw in enumerate(WX250S_SCREWS):
        pose = pose @ screw_exp(screw, q[..., i])
    return pose @ WX250S_M


def wx250s_ee_position(q: np.ndarray) -> np.ndarray:
    """End-effector position (..., 3) [m] in the base frame for joint angles (..., 6)."""
    return wx250s_fk(q)[..., :3, 3]
