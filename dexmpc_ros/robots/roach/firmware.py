"""
VelociRoACH emulator: the XBee basestation + robot firmware on a pseudo-terminal.

The driver opens ``link.path`` as it would /dev/ttyUSB0 and speaks XBee API mode 1 frames
(wire/xbee.py) carrying the application protocol (robots/roach/protocol.py).
The emulator thread:

- parses TX16 requests; answers each with a TX status (as the basestation XBee does: 0 if
  the robot heard it, 1 "no ACK" if not) and, when addressed to the robot, runs the command;
- answers ECHO, WHO_AM_I, SET_PID_GAINS (echo), GET_AMS_POS, ZERO_POS, and a telemetry
  record (0x20) to every SET_VEL_GET_IMU / SET_THRUST_GET_IMU;
- ``telemetry='stream'``: streams records at ``telemetry_rate_hz`` after START_TELEMETRY
  (n records; 0 stops). The board samples at 1 kHz into flash (hardware.md §4.1); one
  57-byte record frame is 570 bits, so 57600 baud carries at most ~100 records/s: default
  50 Hz, half the link. ``telemetry='reply'`` (hardware.md §4.3/§4.6): START_TELEMETRY
  sends nothing, the only records are the replies above;
- stops the legs when no motion command came for ``command_timeout_s`` (robot-side safety,
  hardware.md §4.6), and open-loop runs after their run time: on time, however late it wakes.

Bodies: :class:`KinematicBody` (legs follow their speed setpoint with a first-order lag, the
body is a unicycle: forward speed ~ mean crank speed, yaw rate ~ their difference), or
:class:`TwinBody` for hardware-in-the-loop: commands -> ``RoachTwin.apply_command``,
``twin.step()`` once per twin period on the emulator's clock, telemetry from the twin (crank
encoders, gyro = body angular velocity, accel = body-frame specific force).

Open-loop duty is mapped to a crank speed by :data:`FREE_SPEED_RAD_S` at full duty (our
assumption, no motor data in the sources). Back-EMF is :data:`BEMF_COUNTS_PER_RAD_S` per rad/s.

Faults: :meth:`RoachFirmwareEmulator.lose_link` / ``restore_link`` (radio down: nothing
reaches the host, and with ``hears=False`` nothing reaches the robot), ``corrupt_next(n)``
(bad checksums), ``truncate_next(n)`` (partial frames), ``inject_garbage(data)``, and
``unplug()`` / ``replug()`` of the USB port.

    python -m dexmpc_ros.robots.roach.firmware --port /tmp/ttyROACH [--twin]
"""

from __future__ import annotations

import argparse
import collections
import logging
import math
import signal
import struct
import threading
import time
from dataclasses import dataclass

import numpy as np

from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.wire.pty_link import PtyLink
from dexmpc_ros.robots.roach import protocol as rp
from dexmpc_ros.wire.xbee import (API_TX16, FrameError, FrameParser, RxPacket16, TxRequest16,
                                  TxStatus)

log = logging.getLogger(__name__)

FREE_SPEED_RAD_S = 60.0          # crank speed at full open-loop duty (assumption)
BEMF_COUNTS_PER_RAD_S = 10.0     # back-EMF ADC counts per crank rad/s (assumption)
VBATT_COUNTS = 700               # battery ADC counts (~3.9 V, assumption)
GRAVITY = 9.80665
_RECORD_FRAME_BITS = (4 + 5 + 2 + rp.RECORD_SIZE) * 10     # 8N1 serial bits of one record


@dataclass(frozen=True)
class EmulatorConfig:
    """
    Settings of :class:`RoachFirmwareEmulator`.

    Attributes:
        robot_address: the robot's 16-bit address (frames to others get no ACK).
        telemetry_rate_hz: streaming rate [Hz]; must fit the serial link at ``baudrate``.
        telemetry: ``stream`` or ``reply`` (one record per SET_*_GET_IMU, no streaming).
        baudrate: the basestation's serial speed [bit/s] (only bounds the rate).
        command_timeout_s: legs stop after this long without a motion command [s]; 0: never.
        rssi: reported signal strength [-dBm].
        initial_counts: crank encoder counts at start (near 2**31 to test rollover).
        version: WHO_AM_I answer.
    """

    robot_address: int = 0x0001
    telemetry_rate_hz: float = 50.0
    telemetry: str = 'stream'
    baudrate: int = 57600
    command_timeout_s: float = 1.0
    rssi: int = 40
    initial_counts: tuple[int, int] = (0, 0)
    version: bytes = b'dexmpc VelociRoACH emulator 1.0'

    def __post_init__(self) -> None:
        capacity = self.baudrate / _RECORD_FRAME_BITS
        if not 0 < self.telemetry_rate_hz <= capacity:
            raise ValueError(f'telemetry_rate_hz must be in (0, {capacity:.0f}] (the link at '
                             f'{self.baudrate} baud), got {self.telemetry_rate_hz}')
        if self.telemetry not in rp.TELEMETRY_MODES:
            raise ValueError(f'telemetry must be stream or reply, got {self.telemetry!r}')
        if self.command_timeout_s < 0:
            raise ValueError(f'command_timeout_s must be >= 0, got {self.command_timeout_s}')
        if not 0 <= self.rssi <= 255:
            raise ValueError(f'rssi must be 0..255 (-dBm), got {self.rssi}')


@dataclass
class BodySensors:
    """What the board measures: crank angles [rad] and speeds [rad/s] (2,), gyro, accel (3,)."""

    leg_angles: np.ndarray
    leg_speeds: np.ndarray
    gyro: np.ndarray
    accel: np.ndarray


class KinematicBody:
    """
    Legs track speed setpoints with a first-order lag; the body moves as a unicycle.

    Args:
        time_constant_s: leg speed lag [s].
        stride_m_per_rad: forward travel per crank radian [m] (twin: 0.24 m/s at 4 rev/s).
        yaw_per_rad_s: yaw rate per rad/s of right-minus-left crank speed.
    """

    def __init__(self, time_constant_s: float = 0.05, stride_m_per_rad: float = 0.0095,
                 yaw_per_rad_s: float = 0.11):
        self.tau, self.stride, self.yaw_gain = time_constant_s, stride_m_per_rad, yaw_per_rad_s
        self.setpoint = np.zeros(2)
        self.angles, self.speeds = np.zeros(2), np.zeros(2)
        self.pose = np.zeros(3)                      # x, y, yaw (world)
        self._forward_accel, self._speed, self._yaw_rate = 0.0, 0.0, 0.0

    def set_leg_speeds(self, omega: np.ndarray) -> None:
        """Crank speed setpoints (2,) [rad/s]."""
        self.setpoint = np.asarray(omega, dtype=np.float64).copy()

    def advance(self, dt: float) -> None:
        """Integrate ``dt`` seconds."""
        if dt <= 0:
            return
        prev = self.speeds.copy()
        self.speeds = self.setpoint + (self.speeds - self.setpoint) * math.exp(-dt / self.tau)
        self.angles += 0.5 * (prev + self.speeds) * dt
        speed = self.stride * float(np.mean(self.speeds))
        self._forward_accel, self._speed = (speed - self._speed) / dt, speed
        self._yaw_rate = self.yaw_gain * float(self.speeds[1] - self.speeds[0])
        self.pose += dt * np.array([speed * math.cos(self.pose[2]),
                                    speed * math.sin(self.pose[2]), self._yaw_rate])

    def sensors(self) -> BodySensors:
        """Current measurements."""
        return BodySensors(self.angles.copy(), self.speeds.copy(),
                           np.array([0.0, 0.0, self._yaw_rate]),
                           np.array([self._forward_accel, self._speed * self._yaw_rate, GRAVITY]))


class TwinBody:
    """
    A :class:`~dexmpc_ros.robots.roach.twin.RoachTwin` stepped on the emulator's clock.

    The twin steps once per control period (100 ms); telemetry goes out at 50 Hz. Crank
    angles are therefore interpolated between the last two twin steps: held angles would
    make the driver (which differentiates them) read zero speed in most records and a
    fivefold one in the rest, and extrapolating with the twin's crank speed jumps at each
    step by the speed's change within it (contacts make that large), which the
    supervisor's step rule once turned into a growing leg oscillation. Interpolated angles
    count smoothly at each step's mean speed, one twin period late.
    """

    def __init__(self, twin) -> None:
        self.twin = twin
        self._pending = 0.0
        self._command = np.zeros(2)
        self._accel = np.array([0.0, 0.0, GRAVITY])
        self._v_world = self._world_velocity()
        self._previous = self._current = self._leg_angles()

    def _leg_angles(self) -> np.ndarray:
        return self.twin.joints().position[:2].copy()

    def _world_velocity(self) -> np.ndarray:
        odom = self.twin.odom()
        return _rotation(odom.orientation_xyzw) @ odom.linear

    def set_leg_speeds(self, omega: np.ndarray) -> None:
        """Crank speed setpoints (2,) [rad/s], applied at the next twin step."""
        self._command = np.asarray(omega, dtype=np.float64).copy()

    def reset(self, seed: int | None = None) -> None:
        """
        ``twin.reset(seed)`` (a new episode), and restart the accelerometer's history.

        The leg setpoints stay: the firmware keeps running its PID loops.
        """
        self.twin.reset(seed)
        self._pending = 0.0
        self._accel = np.array([0.0, 0.0, GRAVITY])
        self._v_world = self._world_velocity()
        self._previous = self._current = self._leg_angles()

    def advance(self, dt: float) -> None:
        """Step the twin once per elapsed twin period (zero-order hold in between)."""
        self._pending += dt
        while self._pending >= self.twin.dt:
            self._pending -= self.twin.dt
            self.twin.apply_command(self._command)
            self.twin.step()
            v_world = self._world_velocity()
            rot = _rotation(self.twin.odom().orientation_xyzw)
            self._accel = rot.T @ ((v_world - self._v_world) / self.twin.dt
                                   + np.array([0.0, 0.0, GRAVITY]))
            self._v_world = v_world
            self._previous, self._current = self._current, self._leg_angles()

    def sensors(self) -> BodySensors:
        """Twin joints (crank angles interpolated, see the class) and body rates."""
        joints, odom = self.twin.joints(), self.twin.odom()
        fraction = min(1.0, self._pending / self.twin.dt)
        angles = self._previous + (self._current - self._previous) * fraction
        return BodySensors(angles, joints.velocity[:2].copy(), odom.angular.copy(),
                           self._accel.copy())


def _rotation(q_xyzw: np.ndarray) -> np.ndarray:
    x, y, z, w = q_xyzw
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


class RoachFirmwareEmulator:
    """
    Basestation XBee + VelociRoACH firmware serving ``link`` from a background thread.

    Args:
        link: the pty (created with ``drop_when_full=True`` when None).
        body: KinematicBody (default) or TwinBody.
        config: emulator settings.

    Attributes (read them from tests): ``received`` deque of (time, Payload) the host sent
    to the robot's address, on the wire (whether or not the robot heard it); ``sent_records``
    count; ``mode`` ('idle' | 'velocity' | 'thrust').
    """

    def __init__(self, link: PtyLink | None = None, body=None,
                 config: EmulatorConfig | None = None):
        self.link = link if link is not None else PtyLink(drop_when_full=True)
        self.body = body if body is not None else KinematicBody()
        self.config = config or EmulatorConfig()
        self.parser = FrameParser()
        self.received: collections.deque = collections.deque(maxlen=2000)
        self.sent_records = 0
        self.hears = self.answers = True
        self.mode = 'idle'
        self._lock = threading.RLock()
        self._corrupt = self._truncate = 0
        self._setpoint = np.zeros(2)            # counts/ms (velocity mode)
        self._duty = np.zeros(2)                # open-loop duty
        self._thrust_until = math.inf
        self._zero = np.array(self.config.initial_counts, dtype=np.float64)
        self._compos = self._zero.copy()
        self._stream_left = 0
        self._sample = 0
        self._gains = b'\x00' * 20
        self._start = self._now = self._last_motion = self._next_record = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # Lifecycle --------------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """Where the driver finds the port."""
        return self.link.path

    def start(self) -> RoachFirmwareEmulator:
        """Serve in a daemon thread; returns self."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name='roach-emulator', daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the pty."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.link.unplug()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # Fault injection ----------------------------------------------------------------------------
    def lose_link(self, hears: bool = False) -> None:
        """Radio down: the robot's packets are lost; with hears=False the host's too."""
        self.answers, self.hears = False, hears

    def restore_link(self) -> None:
        """Radio back up in both directions."""
        self.answers = self.hears = True

    def corrupt_next(self, count: int) -> None:
        """Send the next ``count`` robot frames with a wrong checksum."""
        self._corrupt += count

    def truncate_next(self, count: int) -> None:
        """Send only the first half of the next ``count`` robot frames."""
        self._truncate += count

    def inject_garbage(self, data: bytes) -> None:
        """Write raw bytes to the host."""
        self.link.write(data)

    def unplug(self) -> None:
        """Pull the basestation's USB cable."""
        self.link.unplug()

    def replug(self) -> None:
        """Plug it back in (a fresh pty at the same path)."""
        self.link.replug()

    # Robot state (thread-safe views) -------------------------------------------------------
    def sensors(self) -> BodySensors:
        """The body's current measurements."""
        with self._lock:
            return self.body.sensors()

    def received_types(self) -> list[int]:
        """Payload types the host sent, oldest first."""
        return [p.type for _, p in list(self.received)]

    # Serving -------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.link.plugged:
                self._stop.wait(0.01)
                self.parser.reset()
                continue
            wait = min(0.005, max(0.0, self._next_record - time.monotonic()))
            data = self.link.read(timeout=wait)
            with self._lock:
                self._advance(time.monotonic())
                for frame in self.parser.feed(data) if data else ():
                    self._on_frame(frame)
                self._stream(self._now)

    def _advance(self, now: float) -> None:
        timeout = self.config.command_timeout_s
        end = min(self._thrust_until if self.mode == 'thrust' else math.inf,
                  self._last_motion + timeout if timeout else math.inf)
        for t in ((max(end, self._now), now) if self.mode != 'idle' and now >= end else (now,)):
            dt, self._now = t - self._now, t
            if self.mode == 'velocity':
                self._compos += self._setpoint * dt * 1000.0
            self.body.advance(dt)
            if self.mode != 'idle' and t >= end:
                self._set_mode('idle')

    def _set_mode(self, mode: str, values=(0, 0), run_time_ms: int = 0) -> None:
        self.mode = mode
        values = np.asarray(values, dtype=np.float64)
        if mode == 'velocity':
            self._setpoint = values
            omega = rp.counts_per_ms_to_rad_s(values)
        else:
            self._setpoint = np.zeros(2)
            self._duty = values if mode == 'thrust' else np.zeros(2)
            omega = self._duty / rp.MAX_THROTTLE * FREE_SPEED_RAD_S
            self._thrust_until = self._now + run_time_ms / 1000.0 if run_time_ms else math.inf
        if mode != 'velocity':
            self._compos = self._counts(self.body.sensors().leg_angles)
        self.body.set_leg_speeds(omega)

    def _counts(self, angles: np.ndarray) -> np.ndarray:
        return np.round(angles * rp.COUNTS_PER_REV / (2 * math.pi)) + self._zero

    def _on_frame(self, frame) -> None:
        try:
            req = TxRequest16.from_frame(frame) if frame.api_id == API_TX16 else None
        except FrameError:
            req = None
        if req is None:
            log.debug('roach emulator: ignored API frame %#04x', frame.api_id)
            return
        ours = req.dest == self.config.robot_address
        heard = ours and self.hears
        if req.frame_id:
            self.link.write(TxStatus(req.frame_id, 0 if heard else 1).encode())
        try:
            payload = rp.Payload.decode(req.rf_data)
        except rp.ProtocolError:
            return
        if ours:
            self.received.append((self._now, payload))
        if heard:
            try:
                self._execute(payload)
            except rp.ProtocolError as exc:       # short args: the firmware ignores it
                log.debug('roach emulator: %s', exc)

    def _execute(self, p: rp.Payload) -> None:
        cmd = p.type
        if cmd in (rp.Cmd.SET_VEL_GET_IMU, rp.Cmd.SET_THRUST_GET_IMU, rp.Cmd.SET_THRUST_OPEN_LOOP):
            self._last_motion = self._now
            if cmd == rp.Cmd.SET_VEL_GET_IMU:
                self._set_mode('velocity', p.args('hh'))
            elif cmd == rp.Cmd.SET_THRUST_GET_IMU:
                self._set_mode('thrust', p.args('hh'))
            else:
                left, right, run_ms = p.args('hhH')
                self._set_mode('thrust', (left, right), run_ms)
            if cmd != rp.Cmd.SET_THRUST_OPEN_LOOP:
                self._send_record()
        elif cmd == rp.Cmd.START_TELEMETRY and self.config.telemetry == 'stream':
            (self._stream_left,) = p.args('L')
            self._next_record = self._now
        elif cmd in (rp.Cmd.PID_STOP_MOTORS, rp.Cmd.SOFTWARE_RESET):
            self._set_mode('idle')
            if cmd == rp.Cmd.SOFTWARE_RESET:
                self._stream_left = 0
        elif cmd == rp.Cmd.ECHO:
            self._reply(p)
        elif cmd == rp.Cmd.WHO_AM_I:
            self._reply(rp.Payload(cmd, self.config.version))
        elif cmd == rp.Cmd.SET_PID_GAINS:
            self._gains = p.data[:20]
            self._reply(rp.Payload(cmd, self._gains))
        elif cmd in (rp.Cmd.GET_AMS_POS, rp.Cmd.ZERO_POS):
            counts = self._counts(self.body.sensors().leg_angles)
            self._reply(rp.Payload(cmd, struct.pack('<2l', *(rp.wrap_int32(c) for c in counts))))
            if cmd == rp.Cmd.ZERO_POS:
                self._zero -= counts
        # PID_START_MOTORS and the rest: accepted, nothing to emulate

    def _stream(self, now: float) -> None:
        if self._stream_left <= 0 or now < self._next_record:
            return
        self._send_record()
        if self._stream_left != rp.TELEMETRY_FOREVER:
            self._stream_left -= 1
        period = 1.0 / self.config.telemetry_rate_hz
        self._next_record = max(self._next_record + period, now - period)

    def _send_record(self) -> None:
        s = self.body.sensors()
        duty = (self._duty if self.mode == 'thrust' else
                np.clip(rp.counts_per_ms_to_rad_s(self._setpoint) / FREE_SPEED_RAD_S, -1, 1)
                * rp.MAX_THROTTLE)
        compos = self._compos if self.mode == 'velocity' else self._counts(s.leg_angles)
        rec = rp.record_from_si(self._sample, self._now - self._start,
                                tuple(self._counts(s.leg_angles)), tuple(compos), tuple(duty),
                                s.gyro, s.accel, tuple(s.leg_speeds * BEMF_COUNTS_PER_RAD_S),
                                VBATT_COUNTS)
        self._sample += 1
        self.sent_records += 1
        self._reply(rec.payload())

    def _reply(self, payload: rp.Payload) -> None:
        if not self.answers:
            return
        frame = bytearray(RxPacket16(self.config.robot_address, payload.encode(),
                                     rssi=self.config.rssi).encode())
        if self._corrupt:
            self._corrupt -= 1
            frame[-1] ^= 0x5A
        if self._truncate:
            self._truncate -= 1
            frame = frame[:len(frame) // 2]
        self.link.write(bytes(frame))


def main(argv: list[str] | None = None) -> int:
    """CLI: serve an emulated VelociRoACH at --port until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--port', required=True, help='path of the emulated serial port')
    parser.add_argument('--twin', action='store_true', help='back it with the MuJoCo twin')
    parser.add_argument('--rate', type=float, default=50.0, help='telemetry rate [Hz]')
    parser.add_argument('--telemetry', choices=rp.TELEMETRY_MODES, help='default: roach.yaml')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(name)s: %(message)s')
    body = None
    if args.twin:
        from dexmpc_ros.robots.roach.twin import RoachTwin
        body = TwinBody(RoachTwin(task='straight', seed=0))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    telemetry = args.telemetry or load_robot_spec('roach').driver.get('telemetry', 'stream')
    config = EmulatorConfig(telemetry_rate_hz=args.rate, telemetry=telemetry)
    emulator = RoachFirmwareEmulator(PtyLink(args.port, drop_when_full=True), body, config)
    with emulator:
        log.info('VelociRoACH emulator on %s (%s body, telemetry %s)', args.port,
                 'twin' if args.twin else 'kinematic', telemetry)
        stop.wait()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
