"""
Camera node over real DDS: the node is its own process with the synthetic RealSense (a
pyrealsense2 software device: real librealsense syncer and alignment, our pixels); this
test is the perception side. Without a camera, ``source: device`` must fail loudly.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('rclpy')
pytest.importorskip('pyrealsense2')

from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from dexmpc_ros.ros import convert  # noqa: E402
from dexmpc_ros.ros.probe import GraphProbe  # noqa: E402
from node_process import start_node as start_node_process, stop  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
W, H = 160, 120
TOPICS = {'color': ('camera/color/image_raw', Image),
          'info': ('camera/color/camera_info', CameraInfo),
          'depth': ('camera/aligned_depth_to_color/image_raw', Image),
          'depth_info': ('camera/aligned_depth_to_color/camera_info', CameraInfo)}


def start_node(tmp_path: Path, ros_env: dict, **params) -> tuple[subprocess.Popen, Path]:
    return start_node_process('dexmpc_ros.ros.camera_node', tmp_path, ros_env, params,
                              'camera.log')


class Viewer(GraphProbe):
    """Subscribes the camera topics with sensor-data QoS (best effort), as perception does."""

    def __init__(self, domain: int) -> None:
        super().__init__(domain, {}, name='camera_test')
        self.got: dict[str, dict[int, object]] = {key: {} for key in TOPICS}
        for key, (topic, msg_type) in TOPICS.items():
            self.node.create_subscription(msg_type, topic, self._store(key),
                                          qos_profile_sensor_data)

    def _store(self, key: str):
        def store(msg) -> None:
            self.got[key][convert.time_to_ns(msg.header.stamp)] = msg
        return store

    def complete_stamps(self) -> list[int]:
        """Stamps for which all four messages arrived."""
        return sorted(set.intersection(*(set(v) for v in self.got.values())))


def test_synthetic_camera_publishes_matching_images_and_camera_info(tmp_path, ros_env,
                                                                    ros_domain):
    proc, log = start_node(tmp_path, ros_env, source='synthetic', width=W, height=H, fps=30)
    viewer = Viewer(ros_domain)
    try:
        def enough() -> bool:
            assert proc.poll() is None, log.read_text()
            return len(viewer.complete_stamps()) >= 5
        viewer.spin_until(enough, 20.0, '5 complete framesets')
        stamps = viewer.complete_stamps()
        assert np.all(np.diff(stamps) > 0)
        bars = []
        for stamp in stamps:
            color, info = viewer.got['color'][stamp], viewer.got['info'][stamp]
            depth, depth_info = viewer.got['depth'][stamp], viewer.got['depth_info'][stamp]
            assert (color.width, color.height, color.encoding) == (W, H, 'rgb8')
            assert (depth.width, depth.height, depth.encoding) == (W, H, '16UC1')
            assert color.header.frame_id == info.header.frame_id == \
                'camera_color_optical_frame'
            assert (info.width, info.height, info.distortion_model) == (W, H, 'plumb_bob')
            fx = W / 2 / np.tan(np.radians(69.0) / 2)     # the synthetic device's FOV
            np.testing.assert_allclose(np.reshape(info.k, (3, 3)),
                                       [[fx, 0, W / 2], [0, fx, H / 2], [0, 0, 1]], rtol=1e-5)
            assert list(depth_info.k) == list(info.k)      # aligned: colour intrinsics
            rgb = convert.image_to_array(color)
            mm = np.frombuffer(bytes(depth.data), np.uint16).reshape(H, W)
            # One frameset: red = frame number n, the wall at 1000 + n mm.
            assert mm[H // 2, W // 2] == 1000 + int(rgb[0, 0, 0])
            bars.append(int(np.argmax(rgb[H // 2, :, 2] == 255)))
        assert len(set(bars)) > 1, 'the test pattern does not move'
    finally:
        viewer.close()
        code = stop(proc)
    assert code == 0, log.read_text()


@pytest.mark.parametrize('source, expected', [
    ('device', ['no RealSense camera found', 'lsusb']),
    ('recording:/nonexistent/run.db3', ['no RealSense recording at /nonexistent/run.db3']),
])
def test_missing_camera_exits_non_zero_with_the_hint(tmp_path, ros_env, source, expected):
    proc, log = start_node(tmp_path, ros_env, source=source)
    try:
        code = proc.wait(timeout=20)
    finally:
        stop(proc)
    output = log.read_text()
    assert code != 0, output
    last = output.strip().splitlines()[-1]
    for text in expected:
        assert text in last, output


def test_recording_source_plays_a_recording_in_a_loop(tmp_path, ros_env, ros_domain):
    from dexmpc_ros.robots.camera.device import write_recording
    # 12 frames last 0.4 s at 30 fps: without the loop they could be over before the
    # viewer is discovered; with it the viewer must see the recording start again
    path = write_recording(tmp_path / 'rec.db3', 12, width=W, height=H, fps=30)
    proc, log = start_node(tmp_path, ros_env, source=f'recording:{path}', width=W, height=H,
                           fps=30, repeat_recording=True)
    viewer = Viewer(ros_domain)
    try:
        def enough() -> bool:
            assert proc.poll() is None, log.read_text()
            return len(viewer.complete_stamps()) >= 16
        viewer.spin_until(enough, 20.0, '16 recorded framesets')
        reds = []
        for stamp in viewer.complete_stamps():
            rgb = convert.image_to_array(viewer.got['color'][stamp])
            depth = viewer.got['depth'][stamp]
            mm = np.frombuffer(bytes(depth.data), np.uint16).reshape(H, W)
            assert rgb.shape == (H, W, 3) and rgb[0, 0, 0] <= 12   # frames 0..12
            assert mm[H // 2, W // 2] == 1000 + int(rgb[0, 0, 0])  # depth of the same frame
            reds.append(int(rgb[0, 0, 0]))
        assert np.any(np.diff(reds) < 0), reds  # the recording started over
    finally:
        viewer.close()
        code = stop(proc)
    assert code == 0, log.read_text()
