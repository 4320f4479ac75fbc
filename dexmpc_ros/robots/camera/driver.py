"""
Intel RealSense D435 colour (+ aligned depth) frames through ``pyrealsense2``; no rclpy.

    with RealSenseCamera(RealSenseConfig(width=640, height=480, fps=30)) as camera:
        frames = camera.read()       # CameraFrames: rgb8 (H, W, 3), depth mm (H, W), intrinsics

Where the frames come from is a *source* (hardware.md §5.1-5.2):

* :class:`PipelineSource` (default) - ``rs.pipeline`` on the live camera, or on a
  ``.db3`` recording (``recording=path``: a fake D435 for tests and replays);
* :class:`SyncerSource` - frames a ``pyrealsense2.software_device`` injects into an
  ``rs.syncer`` (see :mod:`dexmpc_ros.robots.camera.device`), since a software device
  is not visible to ``rs.pipeline`` in librealsense 2.59.

Both hand back framesets; alignment (``rs.align`` to the colour stream), unit conversion
(depth to millimetres) and intrinsics are done here, once, for every source. Depth aligned
to colour has the colour image's shape and intrinsics. A node turns :class:`CameraFrames`
into ``camera/color/image_raw`` + ``camera/color/camera_info`` (realsense2_camera names,
frame ``camera_color_optical_frame``: x right, y down, z forward).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from dexmpc_ros.robots.driver import (DeviceNotAnsweringError, DriverError, NotConnectedError,
                                      PortMissingError, WrongDeviceError)

logger = logging.getLogger(__name__)

NO_CAMERA_HINT = ('check the USB3 cable/port (lsusb shows 8086:0b07), and the udev rules '
                  '(librealsense 99-realsense-libusb.rules, see config/udev/99-dexmpc.rules)')
NO_FRAMES_HINT = ('check that the camera sits on a USB3 port (a USB2 link cannot carry these '
                  'streams), lower fps or resolution, or raise timeout_ms')


class CameraNotFoundError(PortMissingError):
    """No RealSense camera (with the requested serial number) is connected."""


@dataclass(frozen=True)
class RealSenseConfig:
    """
    Streams to open.

    Attributes:
        serial_number: camera to open; '' = the first one found.
        width: colour image width [px].
        height: colour image height [px].
        fps: frame rate of both streams [Hz] (D435: 6, 15, 30, 60; 90 depth only).
        enable_depth: also stream depth (Z16).
        align_depth_to_color: resample depth into the colour camera (same shape and
            intrinsics as the colour image); else depth keeps its own size and intrinsics.
        depth_width: depth width [px]; 0 = same as colour.
        depth_height: depth height [px]; 0 = same as colour.
        timeout_ms: longest wait for one complete frameset in read() [ms].
    """

    serial_number: str = ''
    width: int = 640
    height: int = 480
    fps: int = 30
    enable_depth: bool = True
    align_depth_to_color: bool = True
    depth_width: int = 0
    depth_height: int = 0
    timeout_ms: int = 1000

    def __post_init__(self) -> None:
        for name in ('width', 'height', 'fps', 'timeout_ms'):
            value = getattr(self, name)
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f'RealSenseConfig.{name} must be an int > 0, got {value!r}')
        for name in ('depth_width', 'depth_height'):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 0):
                raise ValueError(f'RealSenseConfig.{name} must be an int >= 0 (0 = colour '
                                 f'size), got {value!r}')
        if not isinstance(self.serial_number, str) or not self.serial_number.strip() == \
                self.serial_number:
            raise ValueError(f'RealSenseConfig.serial_number must be a string without '
                             f'spaces, got {self.serial_number!r}')

    @property
    def depth_size(self) -> tuple[int, int]:
        """(width, height) of the depth stream [px]."""
        return self.depth_width or self.width, self.depth_height or self.height


@dataclass(frozen=True)
class CameraIntrinsics:
    """
    Pinhole model of one stream, as sensor_msgs/CameraInfo wants it.

    Attributes:
        width, height: image size [px].
        fx, fy: focal lengths [px]; cx, cy: principal point [px].
        distortion_model: CameraInfo model name, ``plumb_bob`` or ``equidistant``.
        coeffs: distortion coefficients D (5 for plumb_bob, 4 for equidistant).
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str
    coeffs: tuple[float, ...]

    @property
    def k(self) -> np.ndarray:
        """(3, 3) camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def p(self) -> np.ndarray:
        """(3, 4) projection matrix P of a monocular camera ([K | 0])."""
        return np.hstack([self.k, np.zeros((3, 1))])


@dataclass(frozen=True)
class CameraFrames:
    """
    One synchronised reading.

    Attributes:
        color: (H, W, 3) uint8 RGB.
        depth: (H', W') uint16 depth [mm] (0 = no measurement), aligned to colour
            (H', W' = H, W) when configured; None without a depth stream.
        intrinsics: of the colour image (and of aligned depth).
        depth_intrinsics: of the depth image when it is not aligned, else None.
        timestamp_s: the camera's capture time of the colour frame [s] (see
            ``timestamp_domain``: ``hardware_clock`` = device clock, ``global_time`` =
            host-synchronised).
        timestamp_domain: librealsense's name of the timestamp's clock.
        frame_number: the colour frame's counter.
        stamp: time.monotonic() when read() got the frameset [s].
    """

    color: np.ndarray
    depth: np.ndarray | None
    intrinsics: CameraIntrinsics
    depth_intrinsics: CameraIntrinsics | None
    timestamp_s: float
    timestamp_domain: str
    frame_number: int
    stamp: float


class FrameSource(Protocol):
    """Where framesets come from; :class:`RealSenseCamera` does the rest."""

    label: str
    no_frames_hint: str

    def open(self, config: RealSenseConfig) -> None:
        """Start streaming as configured; raise a DriverError saying how to fix a failure."""

    def wait(self, timeout_ms: int):
        """The next ``rs.composite_frame``; RuntimeError when none came within the timeout."""

    def close(self) -> None:
        """Stop streaming; idempotent."""


def import_realsense():
    """``pyrealsense2``, or a DriverError saying how to install it."""
    try:
        import pyrealsense2 as rs
    except ImportError as exc:
        raise DriverError(f'cannot import pyrealsense2 ({exc})',
                          'pip install pyrealsense2, and the system library libusb-1.0-0 '
                          '(sudo apt install libusb-1.0-0)') from exc
    return rs


def choose_device(serials: list[str], wanted: str) -> str:
    """
    Serial number of the camera to open.

    Args:
        serials: serial numbers of the connected cameras.
        wanted: requested serial number, '' for any.

    Raises:
        CameraNotFoundError: no camera at all, or none with serial ``wanted``.
    """
    if not serials:
        raise CameraNotFoundError('no RealSense camera found', NO_CAMERA_HINT)
    if not wanted:
        return serials[0]
    if wanted not in serials:
        raise CameraNotFoundError(f'no RealSense camera with serial number {wanted}; '
                                  f'connected: {", ".join(serials)}',
                                  'fix serial_number in the camera config (or leave it '
                                  'empty for any camera)')
    return wanted


class PipelineSource:
    """
    ``rs.pipeline`` on the live camera, or on a ``.db3`` recording when ``recording`` is set.

    Args:
        recording: a recording (librealsense 2.59 writes rosbag2/sqlite ``.db3``) played
            back as fast as read() asks (not in real time), or None for the live camera.
        repeat: play the recording in a loop instead of ending (then read() fails with
            ``no_frames_hint``).
        context: the ``rs.context`` to look for cameras in (default: a new one).
    """

    def __init__(self, recording: str | Path | None = None, context=None,
                 repeat: bool = False) -> None:
        self.recording = Path(recording) if recording is not None else None
        self.repeat = repeat
        self._context = context
        self._pipe = None
        self.label = f'RealSense recording {self.recording}' if self.recording else \
            'RealSense camera'
        self.no_frames_hint = ('the recording has ended (or lacks the configured streams)'
                               if self.recording else NO_FRAMES_HINT)

    def open(self, config: RealSenseConfig) -> None:
        rs = import_realsense()
        cfg = rs.config()
        if self.recording is not None:
            if not self.recording.is_file():
                raise PortMissingError(f'no RealSense recording at {self.recording}',
                                       'check the path (recordings are .db3 files)')
            cfg.enable_device_from_file(str(self.recording), repeat_playback=self.repeat)
        else:
            # Look before starting: rs.pipeline.start() waits 15 s for a missing camera.
            context = self._context if self._context is not None else rs.context()
            serials = [d.get_info(rs.camera_info.serial_number)
                       for d in context.query_devices()]
            serial = choose_device(serials, config.serial_number)
            cfg.enable_device(serial)
            self.label = f'RealSense {serial}'
        enable_streams(rs, cfg, config)
        pipe = rs.pipeline(self._context) if self._context is not None else rs.pipeline()
        if not cfg.can_resolve(rs.pipeline_wrapper(pipe)):
            raise WrongDeviceError(f'{self.label} does not offer {describe_streams(config)}',
                                   'choose a resolution/fps the camera supports '
                                   '(rs-enumerate-devices lists them)')
        try:
            profile = pipe.start(cfg)
        except RuntimeError as exc:
            raise DeviceNotAnsweringError(f'{self.label} failed to start: {exc}',
                                          NO_FRAMES_HINT) from exc
        device = profile.get_device()
        if self.recording is not None:
            device.as_playback().set_real_time(False)
        elif device.supports(rs.camera_info.usb_type_descriptor):
            usb = device.get_info(rs.camera_info.usb_type_descriptor)
            if usb.startswith('2'):
                logger.warning('%s is on a USB %s link: expect dropped frames; use a USB3 '
                               'port and cable', self.label, usb)
        self._pipe = pipe

    def wait(self, timeout_ms: int):
        return self._pipe.wait_for_frames(timeout_ms)

    def close(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            try:
                pipe.stop()
            except RuntimeError:    # already stopped (device lost): nothing left to stop
                pass


class SyncerSource:
    """
    Framesets a software device pushes into a started ``rs.syncer``.

    Args:
        syncer: the syncer the device's sensors were started into.
        profiles: the device's video stream profiles (checked against the config).
        label: name used in messages.
    """

    def __init__(self, syncer, profiles, label: str = 'RealSense software device') -> None:
        self._syncer = syncer
        self._profiles = list(profiles)
        self.label = label
        self.no_frames_hint = 'push() a frame into the software device before read()'

    def open(self, config: RealSenseConfig) -> None:
        rs = import_realsense()
        offered = {(p.stream_type(), p.format(), p.width(), p.height(), p.fps())
                   for p in (q.as_video_stream_profile() for q in self._profiles)}
        wanted = {(rs.stream.color, rs.format.rgb8, config.width, config.height, config.fps)}
        if config.enable_depth:
            wanted.add((rs.stream.depth, rs.format.z16, *config.depth_size, config.fps))
        if not wanted <= offered:
            raise WrongDeviceError(f'{self.label} does not offer {describe_streams(config)}',
                                   'make the software device\'s streams match the config')

    def wait(self, timeout_ms: int):
        return self._syncer.wait_for_frames(timeout_ms)

    def close(self) -> None:
        pass


def enable_streams(rs, cfg, config: RealSenseConfig) -> None:
    """Request colour rgb8 (and depth z16) on an ``rs.config``."""
    cfg.enable_stream(rs.stream.color, config.width, config.height, rs.format.rgb8, config.fps)
    if config.enable_depth:
        cfg.enable_stream(rs.stream.depth, *config.depth_size, rs.format.z16, config.fps)


def describe_streams(config: RealSenseConfig) -> str:
    """'color 640x480@30 rgb8 + depth 640x480@30 z16'."""
    text = f'color {config.width}x{config.height}@{config.fps} rgb8'
    if config.enable_depth:
        width, height = config.depth_size
        text += f' + depth {width}x{height}@{config.fps} z16'
    return text


def intrinsics_of(frame) -> CameraIntrinsics:
    """CameraInfo-style intrinsics of a video frame's stream profile."""
    rs = import_realsense()
    intr = frame.profile.as_video_stream_profile().get_intrinsics()
    # realsense2_camera's rule: Kannala-Brandt (fisheye) is 'equidistant' with 4
    # coefficients; every Brown-Conrady variant (and none) is published as 'plumb_bob'.
    if intr.model == rs.distortion.kannala_brandt4:
        model, coeffs = 'equidistant', tuple(float(c) for c in intr.coeffs[:4])
    else:
        model, coeffs = 'plumb_bob', tuple(float(c) for c in intr.coeffs[:5])
    return CameraIntrinsics(int(intr.width), int(intr.height), float(intr.fx), float(intr.fy),
                            float(intr.ppx), float(intr.ppy), model, coeffs)


def depth_to_mm(depth_frame) -> np.ndarray:
    """(H, W) uint16 depth [mm] of a depth frame, whatever its depth units."""
    raw = np.asanyarray(depth_frame.get_data())
    units = float(depth_frame.get_units())            # metres per raw count
    if math.isclose(units, 0.001, rel_tol=1e-4):
        return raw.copy()
    return np.clip(np.rint(raw * (units * 1000.0)), 0, 65535).astype(np.uint16)


class RealSenseCamera:
    """
    start()/stop() (also a context manager) and read() -> :class:`CameraFrames`.

    Args:
        config: streams to open.
        source: where frames come from (default: :class:`PipelineSource` on the live
            camera).
    """

    def __init__(self, config: RealSenseConfig, source: FrameSource | None = None) -> None:
        self.config = config
        self.source = source if source is not None else PipelineSource()
        self._align = None
        self._started = False

    @property
    def label(self) -> str:
        """Name of the camera for messages."""
        return self.source.label

    @property
    def is_started(self) -> bool:
        """True between a successful start() and stop()."""
        return self._started

    def start(self) -> None:
        """
        Open the source and start streaming.

        Raises:
            CameraNotFoundError: no camera (or not the configured serial number).
            WrongDeviceError: the camera cannot stream as configured.
            DeviceNotAnsweringError: the camera did not start.
        """
        rs = import_realsense()
        self.source.open(self.config)
        self._align = rs.align(rs.stream.color) if (
            self.config.enable_depth and self.config.align_depth_to_color) else None
        self._started = True
        logger.info('%s streaming %s', self.label, describe_streams(self.config))

    def stop(self) -> None:
        """Stop streaming; idempotent."""
        self._started = False
        self.source.close()

    def __enter__(self) -> RealSenseCamera:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def read(self) -> CameraFrames:
        """
        Wait for the next complete frameset (colour, and depth when enabled).

        Raises:
            NotConnectedError: before start().
            DeviceNotAnsweringError: no complete frameset within ``timeout_ms`` (camera
                unplugged, USB bandwidth, or the end of a recording).
        """
        if not self._started:
            raise NotConnectedError(f'{self.label} is not started',
                                    'call start() (or use the camera as a context manager) '
                                    'before read()')
        deadline = time.monotonic() + self.config.timeout_ms / 1000.0
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000.0)
            if remaining_ms <= 0:
                break
            try:
                frames = self.source.wait(remaining_ms)
            except RuntimeError:
                break
            color = frames.get_color_frame()
            depth = frames.get_depth_frame() if self.config.enable_depth else None
            # A syncer's first frameset may hold one stream only: wait for a full one.
            if not color or (depth is not None and not depth):
                continue
            # Colour and depth more than a frame apart are not one moment (a looping
            # recording pairs its first colour frame with its last depth frame): skip.
            if depth is not None and abs(color.get_timestamp() - depth.get_timestamp()) \
                    > 1000.0 / self.config.fps:
                continue
            return self._bundle(frames)
        raise DeviceNotAnsweringError(
            f'{self.label}: no complete frameset within {self.config.timeout_ms} ms',
            self.source.no_frames_hint)

    def _bundle(self, frames) -> CameraFrames:
        stamp = time.monotonic()
        depth_intrinsics = None
        if self._align is not None:
            frames = self._align.process(frames)
        color = frames.get_color_frame()
        depth_frame = frames.get_depth_frame() if self.config.enable_depth else None
        depth = depth_to_mm(depth_frame.as_depth_frame()) if depth_frame else None
        if depth_frame and self._align is None:
            depth_intrinsics = intrinsics_of(depth_frame)
        image = np.asanyarray(color.get_data()).copy()
        if image.shape != (self.config.height, self.config.width, 3):
            raise WrongDeviceError(f'{self.label} sent a {image.shape} colour image, '
                                   f'expected ({self.config.height}, {self.config.width}, 3)',
                                   'check the stream configuration')
        domain = str(color.get_frame_timestamp_domain()).rsplit('.', 1)[-1]
        return CameraFrames(color=image, depth=depth, intrinsics=intrinsics_of(color),
                            depth_intrinsics=depth_intrinsics,
                            timestamp_s=color.get_timestamp() / 1000.0,
                            timestamp_domain=domain,
                            frame_number=int(color.get_frame_number()), stamp=stamp)
