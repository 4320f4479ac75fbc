"""
Camera node: an Intel RealSense (or a recording, or a synthetic one) -> realsense2_camera's
topics.

Publishes (names relative, as realsense2_camera with ``camera_namespace:=''``; hardware.md
§5.3), all with one stamp per frameset and ``qos_profile_sensor_data`` like the twin's
camera:

* ``camera/color/image_raw`` (sensor_msgs/Image rgb8) + ``camera/color/camera_info``,
  frame ``camera_color_optical_frame``;
* depth aligned to colour (``align_depth_to_color``, default):
  ``camera/aligned_depth_to_color/image_raw`` (16UC1, mm) + ``.../camera_info`` (the
  colour intrinsics, colour frame); unaligned: ``camera/depth/image_rect_raw`` +
  ``camera/depth/camera_info``, frame ``camera_depth_optical_frame``;
* ``diagnostics``: measured fps, frames, read errors.

``source``: ``device`` (the live camera; ``serial_number`` picks one), ``recording:<path>``
(a librealsense recording, ``.db3`` on 2.59, played at ``fps``, once or in a loop with
``repeat_recording``) or ``synthetic`` (a
``pyrealsense2`` software device pushing a moving test pattern at ``fps``: no hardware
needed). Stamps are node time at the moment the frameset arrived.

Lifecycle: configure opens the source (no camera -> the CameraNotFoundError message with
its fix hint at ERROR; with ``autostart`` the process exits non-zero with that line);
activate starts a reader thread (reads block on the device, not on the executor);
deactivate stops it; cleanup closes the source.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from dexmpc_ros.core.rate import RateMeter
from dexmpc_ros.robots.driver import DriverError
from dexmpc_ros.robots.camera.driver import (CameraFrames, PipelineSource, RealSenseCamera,
                                             RealSenseConfig)
from dexmpc_ros.ros import convert
from dexmpc_ros.ros.diagnostics import DiagnosticsPublisher
from dexmpc_ros.ros.lifecycle import FAILURE, SUCCESS, autostart, run_lifecycle_node
from dexmpc_ros.ros.params import config_from_node

COLOR_FRAME = 'camera_color_optical_frame'
DEPTH_FRAME = 'camera_depth_optical_frame'
#: pause after a failed read before the next attempt [s]
RETRY_PAUSE_S = 0.5


@dataclass(frozen=True)
class CameraNodeConfig:
    """
    Camera node settings (beside RealSenseConfig's stream settings).

    Attributes:
        source: device (live camera), recording:<path> (a .db3/.bag recording) or
            synthetic (software device, moving test pattern).
        autostart: configure and activate at start-up; false waits for ros2 lifecycle set.
        repeat_recording: loop a recording source (a stand-in camera that keeps streaming)
            instead of stopping at its end with a "no frames" error.
    """

    source: str = 'device'
    autostart: bool = True
    repeat_recording: bool = False

    def __post_init__(self) -> None:
        if self.source not in ('device', 'synthetic') and not (
                self.source.startswith('recording:') and len(self.source) > len('recording:')):
            raise ValueError(f"source must be 'device', 'synthetic' or 'recording:<path>', "
                             f"got {self.source!r}")


def synthetic_scene(n: int, width: int, height: int) -> np.ndarray:
    """
    Frame ``n`` of the synthetic scene: (H, W, 3) uint8 RGB.

    Red = n mod 256, green = a left-to-right ramp, and a white bar 8 px wide that moves
    4 px right per frame (wrapping), so motion is visible in any viewer.
    """
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = n % 256
    image[..., 1] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    x = (4 * n) % width
    image[:, x:x + 8] = 255
    return image


class CameraNode(LifecycleNode):
    """Adapter: RealSenseCamera.read() -> Image + CameraInfo (+ depth)."""

    def __init__(self) -> None:
        super().__init__('camera')
        self.cfg = config_from_node(self, CameraNodeConfig)
        self.streams = config_from_node(self, RealSenseConfig)
        self.startup_error = ''
        self.camera: RealSenseCamera | None = None
        self._synthetic = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._frames = RateMeter(window=30)
        self._errors = 0
        self._last_error = ''
        self._lifecycle = 'unconfigured'

        depth = self.streams.enable_depth
        aligned = self.streams.align_depth_to_color
        self.depth_topic = ('camera/aligned_depth_to_color' if aligned else 'camera/depth')
        qos = qos_profile_sensor_data
        self.pub_color = self.create_lifecycle_publisher(Image, 'camera/color/image_raw', qos)
        self.pub_color_info = self.create_lifecycle_publisher(
            CameraInfo, 'camera/color/camera_info', qos)
        self.pub_depth = self.pub_depth_info = None
        if depth:
            image_name = 'image_raw' if aligned else 'image_rect_raw'
            self.pub_depth = self.create_lifecycle_publisher(
                Image, f'{self.depth_topic}/{image_name}', qos)
            self.pub_depth_info = self.create_lifecycle_publisher(
                CameraInfo, f'{self.depth_topic}/camera_info', qos)
        self.pub_diag = DiagnosticsPublisher(self)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(f'camera from {self.cfg.source}: {self.streams.width}x'
                               f'{self.streams.height}@{self.streams.fps}'
                               + (f', depth on {self.depth_topic}' if depth else ''))
        if self.cfg.autostart:
            autostart(self)

    # Lifecycle ---------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Open the source and start streaming (frames are read once active)."""
        try:
            self.camera = RealSenseCamera(self.streams, self._open_source())
            self.camera.start()
        except DriverError as exc:
            self._close()
            self.startup_error = f'{self.get_name()}: configure failed: {exc}'
            self.get_logger().error(self.startup_error)
            return FAILURE
        self._lifecycle = 'inactive'
        self.get_logger().info(f'{self.camera.label} streaming')
        return SUCCESS

    def _open_source(self):
        source = self.cfg.source
        if source == 'device':
            return PipelineSource()
        if source.startswith('recording:'):
            return PipelineSource(recording=source[len('recording:'):],
                                  repeat=self.cfg.repeat_recording)
        from dexmpc_ros.robots.camera.device import SyntheticRealSense
        s = self.streams
        self._synthetic = SyntheticRealSense(
            s.width, s.height, s.fps, enable_depth=s.enable_depth, depth_width=s.depth_width,
            depth_height=s.depth_height)
        self._synthetic.start()
        return self._synthetic.source()

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start the reader thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name='camera_reader', daemon=True)
        self._thread.start()
        self._lifecycle = 'active'
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the reader thread."""
        self._stop_thread()
        self._lifecycle = 'inactive'
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop streaming and close the source."""
        self._close()
        self._lifecycle = 'unconfigured'
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_thread()
        self._close()
        self._lifecycle = 'finalized'
        return SUCCESS

    def _stop_thread(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0 + self.streams.timeout_ms / 1000.0)
            self._thread = None

    def _close(self) -> None:
        if self.camera is not None:
            self.camera.stop()
            self.camera = None
        if self._synthetic is not None:
            self._synthetic.stop()
            self._synthetic = None

    # Streaming ---------------------------------------------------------------------------
    def _run(self) -> None:
        """Read framesets until stopped; a recording or synthetic source is paced at fps."""
        paced = self.cfg.source != 'device'
        period = 1.0 / self.streams.fps
        due = time.monotonic()
        while not self._stop.is_set():
            if paced:
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    break
                due = max(due + period, time.monotonic() - period)
            if self._synthetic is not None:
                n = self._synthetic.frame_number
                self._synthetic.push(
                    color=synthetic_scene(n, self.streams.width, self.streams.height))
            try:
                frames = self.camera.read()
            except DriverError as exc:
                self._errors += 1
                self._last_error = str(exc)
                self.get_logger().error(f'no frames: {exc}', throttle_duration_sec=5.0)
                self._stop.wait(RETRY_PAUSE_S)
                continue
            self._last_error = ''
            try:
                self._publish(frames)
            except Exception:  # noqa: BLE001 - rclpy raises RCLError once shut down
                if not self.context.ok():
                    break  # Ctrl-C shut the context down before destroy_node stopped us
                raise

    def _publish(self, frames: CameraFrames) -> None:
        age_ns = int((time.monotonic() - frames.stamp) * 1e9)
        stamp = self.get_clock().now().nanoseconds - age_ns
        self.pub_color.publish(convert.image_msg(stamp, frames.color, COLOR_FRAME))
        self.pub_color_info.publish(convert.camera_info_msg(stamp, frames.intrinsics,
                                                            COLOR_FRAME))
        if self.pub_depth is not None and frames.depth is not None:
            intrinsics, frame = ((frames.intrinsics, COLOR_FRAME)
                                 if frames.depth_intrinsics is None
                                 else (frames.depth_intrinsics, DEPTH_FRAME))
            self.pub_depth.publish(convert.depth_image_msg(stamp, frames.depth, frame))
            self.pub_depth_info.publish(convert.camera_info_msg(stamp, intrinsics, frame))
        self._frames.tick()

    def _publish_diagnostics(self) -> None:
        fps = self._frames.rate_hz()
        if self._last_error:
            level, message = 'error', f'no frames: {self._last_error}'
        elif self._lifecycle != 'active':
            level, message = 'warn', f'{self._lifecycle}: not streaming'
        elif fps < 0.5 * self.streams.fps:
            level, message = 'warn', f'{fps:.1f} fps of {self.streams.fps} requested'
        else:
            level, message = 'ok', f'{fps:.1f} fps'
        values = {'rate_hz': fps, 'frames': self._frames.count, 'read_errors': self._errors,
                  'source': self.cfg.source, 'lifecycle_state': self._lifecycle}
        label = self.camera.label if self.camera is not None else self.cfg.source
        self.pub_diag.publish(level, message, values, hardware_id=label)

    def destroy_node(self) -> None:
        """Stop the reader and close the camera."""
        if hasattr(self, '_stop'):
            self._stop_thread()
            self._close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the camera node."""
    return run_lifecycle_node(CameraNode, args)


if __name__ == '__main__':
    sys.exit(main())
