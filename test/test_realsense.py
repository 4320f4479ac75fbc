"""
RealSense camera driver on librealsense itself: a software device (live) and a recording.

No camera is needed: ``SyntheticRealSense`` is a ``pyrealsense2.software_device`` whose
frames go through the real syncer, ``rs.align``, recorder and playback pipeline.
"""

from __future__ import annotations

import numpy as np
import pytest

from dexmpc_ros.robots.camera.device import SyntheticRealSense, write_recording
from dexmpc_ros.robots.driver import (DeviceNotAnsweringError, NotConnectedError, PortMissingError,
                                      WrongDeviceError)
from dexmpc_ros.robots.camera.driver import (CameraNotFoundError, PipelineSource, RealSenseCamera,
                                             RealSenseConfig, choose_device)

rs = pytest.importorskip('pyrealsense2')

W, H, DW, DH = 320, 240, 424, 240      # colour and (different) depth size [px]


def config(**overrides) -> RealSenseConfig:
    return RealSenseConfig(**{'width': W, 'height': H, 'fps': 30, 'timeout_ms': 500,
                              **overrides})


@pytest.fixture
def synthetic():
    with SyntheticRealSense(W, H, fps=30, depth_width=DW, depth_height=DH) as device:
        yield device


def test_aligned_frames_have_the_configured_size_and_pixels(synthetic):
    with RealSenseCamera(config(depth_width=DW, depth_height=DH), synthetic.source()) as cam:
        for _ in range(3):
            n = synthetic.push()
            frames = cam.read()
            assert frames.frame_number == n
            assert frames.color.shape == (H, W, 3) and frames.color.dtype == np.uint8
            assert np.all(frames.color[..., 0] == n)
            assert frames.color[0, 0, 1] == 0 and frames.color[0, -1, 1] == 255
            # Depth (424 wide) resampled into the colour camera: colour's shape.
            assert frames.depth.shape == (H, W) and frames.depth.dtype == np.uint16
            assert frames.depth[H // 2, W // 2] == 1000 + n        # mm
            assert frames.depth_intrinsics is None
            assert frames.timestamp_s == pytest.approx(n / 30)
            assert frames.timestamp_domain == 'hardware_clock'


def test_intrinsics_are_filled_for_camera_info(synthetic):
    with RealSenseCamera(config(depth_width=DW, depth_height=DH), synthetic.source()) as cam:
        synthetic.push()
        intr = cam.read().intrinsics
    assert (intr.width, intr.height) == (W, H)
    assert (intr.cx, intr.cy) == (W / 2, H / 2)
    expected_f = W / 2 / np.tan(np.radians(69.0) / 2)       # the device's 69 deg FOV
    assert intr.fx == pytest.approx(expected_f, rel=1e-5)
    assert intr.fy == pytest.approx(expected_f, rel=1e-5)
    assert intr.distortion_model == 'plumb_bob' and intr.coeffs == (0.0,) * 5
    np.testing.assert_allclose(intr.k, [[intr.fx, 0, W / 2], [0, intr.fy, H / 2], [0, 0, 1]])
    assert intr.p.shape == (3, 4) and np.all(intr.p[:, 3] == 0)


def test_unaligned_depth_keeps_its_size_and_intrinsics(synthetic):
    cfg = config(depth_width=DW, depth_height=DH, align_depth_to_color=False)
    with RealSenseCamera(cfg, synthetic.source()) as cam:
        raw = np.arange(DH * DW, dtype=np.uint16).reshape(DH, DW)
        synthetic.push(depth_raw=raw)
        frames = cam.read()
    np.testing.assert_array_equal(frames.depth, raw)
    assert (frames.depth_intrinsics.width, frames.depth_intrinsics.height) == (DW, DH)
    assert frames.intrinsics.width == W


def test_pushed_colour_comes_back_exactly_and_depth_can_be_off():
    with SyntheticRealSense(W, H, enable_depth=False) as device:
        image = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
        with RealSenseCamera(config(enable_depth=False), device.source()) as cam:
            device.push(color=image)
            frames = cam.read()
    np.testing.assert_array_equal(frames.color, image)
    assert frames.depth is None


def test_depth_in_other_units_is_converted_to_mm():
    with SyntheticRealSense(W, H, depth_units_m=0.0001) as device:     # 0.1 mm per count
        with RealSenseCamera(config(align_depth_to_color=False), device.source()) as cam:
            device.push(depth_raw=np.full((H, W), 12345, np.uint16))
            frames = cam.read()
    assert np.all(frames.depth == 1234) or np.all(frames.depth == 1235)   # 1234.5 mm


def test_read_without_frames_times_out_with_a_hint(synthetic):
    with RealSenseCamera(config(depth_width=DW, depth_height=DH, timeout_ms=100),
                         synthetic.source()) as cam:
        with pytest.raises(DeviceNotAnsweringError, match='within 100 ms: push'):
            cam.read()


def test_streams_the_device_lacks_are_refused(synthetic):
    camera = RealSenseCamera(config(width=640, height=480), synthetic.source())
    with pytest.raises(WrongDeviceError, match='color 640x480@30 rgb8'):
        camera.start()
    assert not camera.is_started


def test_read_before_start_says_how_to_fix(synthetic):
    with pytest.raises(NotConnectedError, match='call start'):
        RealSenseCamera(config(), synthetic.source()).read()


def test_recording_plays_back_through_the_pipeline(tmp_path):
    path = write_recording(tmp_path / 'fake_d435.db3', 5, width=W, height=H)
    source = PipelineSource(recording=path)
    numbers = []
    with RealSenseCamera(config(), source) as cam:
        with pytest.raises(DeviceNotAnsweringError, match='recording has ended'):
            while True:
                frames = cam.read()
                numbers.append(frames.frame_number)
                assert frames.color.shape == (H, W, 3) and frames.depth.shape == (H, W)
                assert frames.depth[H // 2, W // 2] == 1000 + frames.frame_number
    assert numbers[-4:] == [2, 3, 4, 5]


def test_a_looping_recording_starts_over_and_never_mixes_passes(tmp_path):
    path = write_recording(tmp_path / 'loop.db3', 5, width=W, height=H)
    numbers = []
    with RealSenseCamera(config(), PipelineSource(recording=path, repeat=True)) as cam:
        for _ in range(16):
            frames = cam.read()
            # at the loop point the syncer pairs new colour with old depth: never returned
            assert frames.depth[H // 2, W // 2] == 1000 + frames.frame_number
            numbers.append(frames.frame_number)
    assert np.any(np.diff(numbers) < 0), numbers


def test_recording_without_the_configured_stream_is_refused(tmp_path):
    path = write_recording(tmp_path / 'small.db3', 2, width=W, height=H)
    camera = RealSenseCamera(config(width=640, height=480), PipelineSource(recording=path))
    with pytest.raises(WrongDeviceError, match='does not offer color 640x480'):
        camera.start()


def test_missing_recording_is_a_missing_port(tmp_path):
    with pytest.raises(PortMissingError, match='no RealSense recording'):
        RealSenseCamera(config(), PipelineSource(recording=tmp_path / 'x.db3')).start()


def test_absent_camera_fails_fast_with_the_usb_and_udev_hint():
    context = rs.context()
    if len(context.query_devices()):
        pytest.skip('a RealSense camera is connected')
    with pytest.raises(CameraNotFoundError) as info:
        RealSenseCamera(config(), PipelineSource(context=context)).start()
    assert isinstance(info.value, PortMissingError)
    assert '8086:0b07' in str(info.value) and '99-realsense-libusb.rules' in info.value.hint


def test_choose_device_by_serial():
    assert choose_device(['111', '222'], '') == '111'
    assert choose_device(['111', '222'], '222') == '222'
    with pytest.raises(CameraNotFoundError, match='serial number 333; connected: 111, 222'):
        choose_device(['111', '222'], '333')
    with pytest.raises(CameraNotFoundError, match='lsusb'):
        choose_device([], '333')


@pytest.mark.parametrize('field, value', [('width', 0), ('fps', -30), ('timeout_ms', 1.5),
                                          ('depth_width', -1), ('serial_number', ' 12')])
def test_config_rejects_bad_values_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        RealSenseConfig(**{field: value})
