"""
A synthetic RealSense D435 built from ``pyrealsense2.software_device`` (hardware.md §5.2).

The real librealsense runs end to end - frame objects, syncer, ``rs.align``, recorder and
playback - only the pixels are ours. Two ways to use it:

* live: ``with SyntheticRealSense(...) as dev: dev.push(); camera = RealSenseCamera(cfg,
  dev.source())`` - frames go into an ``rs.syncer`` that the camera reads;
* recorded: :func:`write_recording` writes a ``.db3`` file that
  ``PipelineSource(recording=path)`` plays back through ``rs.pipeline`` like a camera.

Frame 0 is a warm-up frameset that start() consumes. The default scene: colour red channel
= frame number mod 256, green = a left-to-right ramp; depth a flat wall at
``1000 + frame number`` mm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dexmpc_ros.robots.camera.driver import SyncerSource, import_realsense

DEPTH_UNITS_M = 0.001          # metres per depth count, as a D435


def synthetic_intrinsics(rs, width: int, height: int, fov_x_deg: float = 69.0):
    """``rs.intrinsics`` of an ideal pinhole with a D435-like horizontal field of view."""
    intr = rs.intrinsics()
    intr.width, intr.height = width, height
    intr.fx = intr.fy = width / 2 / np.tan(np.radians(fov_x_deg) / 2)
    intr.ppx, intr.ppy = width / 2, height / 2
    intr.model = rs.distortion.brown_conrady
    intr.coeffs = [0.0] * 5
    return intr


class SyntheticRealSense:
    """
    Software colour (+ depth) camera.

    Args:
        width, height: colour size [px]; depth_width, depth_height: depth size (0 = same).
        fps: nominal frame rate [Hz] (sets the timestamps: frame i at i / fps s).
        enable_depth: add a depth sensor.
        serial_number: reported as the device's serial number.
        record_to: if set, a ``.db3`` file the device's frames are recorded into (closed
            by stop()).
        depth_units_m: metres per depth count (D435: 0.001; D405: 0.0001).
    """

    def __init__(self, width: int = 640, height: int = 480, fps: int = 30,
                 enable_depth: bool = True, depth_width: int = 0, depth_height: int = 0,
                 serial_number: str = '000000000000', record_to: str | Path | None = None,
                 depth_units_m: float = DEPTH_UNITS_M):
        self._rs = rs = import_realsense()
        self.size = (width, height)
        self.depth_size = (depth_width or width, depth_height or height)
        self.fps = fps
        self.frame_number = 0
        self.depth_units_m = depth_units_m
        self.device = rs.software_device()
        self.device.register_info(rs.camera_info.name, 'Synthetic D435')
        self.device.register_info(rs.camera_info.serial_number, serial_number)
        self._color_sensor = self.device.add_sensor('Color')
        self._color = self._add_stream(self._color_sensor, rs.stream.color, 2, self.size,
                                       3, rs.format.rgb8)
        self._depth_sensor = self._depth = None
        if enable_depth:
            self._depth_sensor = self.device.add_sensor('Depth')
            self._depth = self._add_stream(self._depth_sensor, rs.stream.depth, 1,
                                           self.depth_size, 2, rs.format.z16)
            self._depth_sensor.add_read_only_option(rs.option.depth_units, depth_units_m)
            extrinsics = rs.extrinsics()
            extrinsics.rotation = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
            extrinsics.translation = [0.0, 0.0, 0.0]     # colour and depth share a centre
            self._depth.register_extrinsics_to(self._color, extrinsics)
        self._record_to = Path(record_to) if record_to is not None else None
        self._recorder = None
        self.syncer = None

    def _add_stream(self, sensor, stream, uid, size, bpp, fmt):
        rs = self._rs
        video = rs.video_stream()
        video.type, video.index, video.uid = stream, 0, uid
        video.width, video.height = size
        video.fps, video.bpp, video.fmt = self.fps, bpp, fmt
        video.intrinsics = synthetic_intrinsics(rs, *size)
        return sensor.add_video_stream(video)

    @property
    def profiles(self) -> list:
        """The device's stream profiles (colour first)."""
        return [p for p in (self._color, self._depth) if p is not None]

    def start(self) -> None:
        """Open and start the sensors into a new syncer (and the recorder, if any)."""
        rs = self._rs
        if self._record_to is not None:
            self._recorder = rs.recorder(str(self._record_to), self.device)
        self.syncer = rs.syncer()
        for sensor, profile in self._sensors():
            sensor.open(profile)
            sensor.start(self.syncer)
        # The syncer learns which streams exist from the first frames it sees and emits
        # them unmatched: push one warm-up frameset and drain it, so that every later
        # push() yields one complete frameset.
        self.push()
        while self.syncer.try_wait_for_frames(50)[0]:
            pass

    def stop(self) -> None:
        """Stop and close the sensors; finalises the recording."""
        for sensor, _ in self._sensors():
            sensor.stop()
            sensor.close()
        self._recorder = None        # the recorder writes its file when released

    def __enter__(self) -> SyntheticRealSense:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _sensors(self):
        pairs = [(self._color_sensor, self._color)]
        if self._depth is not None:
            pairs.append((self._depth_sensor, self._depth))
        return pairs

    def source(self) -> SyncerSource:
        """A frame source for :class:`RealSenseCamera` reading this device's syncer."""
        if self.syncer is None:
            raise RuntimeError('SyntheticRealSense.start() must come before source()')
        return SyncerSource(self.syncer, self.profiles, label='synthetic RealSense')

    def push(self, color: np.ndarray | None = None, depth_raw: np.ndarray | None = None) -> int:
        """
        Inject one frame per stream, stamped ``frame_number / fps`` on the device clock.

        Args:
            color: (H, W, 3) uint8 RGB, default the synthetic scene.
            depth_raw: (H', W') uint16 raw depth counts (mm at the default depth units),
                default the synthetic wall.

        Returns:
            the frame number used.
        """
        n = self.frame_number
        width, height = self.size
        if color is None:
            color = np.zeros((height, width, 3), np.uint8)
            color[..., 0] = n % 256
            color[..., 1] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
        self._inject(self._color_sensor, self._color, color, 3, n)
        if self._depth is not None:
            if depth_raw is None:
                depth_raw = np.full(self.depth_size[::-1], 1000 + n, np.uint16)
            self._inject(self._depth_sensor, self._depth, depth_raw, 2, n)
        self.frame_number += 1
        return n

    def _inject(self, sensor, profile, pixels: np.ndarray, bpp: int, n: int) -> None:
        rs = self._rs
        video = profile.as_video_stream_profile()
        expected = (video.height(), video.width()) + ((3,) if bpp == 3 else ())
        dtype = np.uint8 if bpp == 3 else np.uint16
        if pixels.shape != expected or pixels.dtype != dtype:
            raise ValueError(f'synthetic {profile.stream_name()} frame must be {expected} '
                             f'{np.dtype(dtype).name}, got {pixels.shape} {pixels.dtype}')
        frame = rs.software_video_frame()
        frame.pixels = np.ascontiguousarray(pixels)      # pyrealsense2 copies the buffer
        frame.stride, frame.bpp = video.width() * bpp, bpp
        frame.timestamp = n * 1000.0 / self.fps           # ms
        frame.domain = rs.timestamp_domain.hardware_clock
        frame.frame_number = n
        frame.profile = video
        if bpp == 2:
            frame.depth_units = self.depth_units_m
        sensor.on_video_frame(frame)


def write_recording(path: str | Path, n_frames: int, **device_options) -> Path:
    """
    Record ``n_frames`` synthetic framesets into a ``.db3`` file (a fake D435 to play back).

    Args:
        path: output file; librealsense 2.59 insists on the ``.db3`` suffix.
        n_frames: framesets, numbered 1..n_frames (frame 0, the warm-up, is recorded
            too; the pipeline's syncer may drop it on playback).
        **device_options: :class:`SyntheticRealSense` arguments (width, height, ...).
    """
    path = Path(path)
    if path.suffix != '.db3':
        raise ValueError(f'RealSense recordings must end in .db3, got {path}')
    device = SyntheticRealSense(record_to=path, **device_options)
    with device:
        for _ in range(n_frames):
            device.push()
            device.syncer.wait_for_frames(1000)   # pace the recorder: one frameset at a time
    del device
    return path
