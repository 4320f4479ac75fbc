"""
VelociRoACH driver: XBee API frames over a serial port (pyserial), telemetry records.

    with RoachDriver(RoachDriverConfig.from_spec(load_robot_spec('roach'))) as roach:
        state = roach.read()                 # leg-crank angles/speeds + IMU in state.extra
        sent = roach.write([25.0, 25.0])     # crank speeds [rad/s] -> SET_VEL_GET_IMU

Link (shared/reference/hardware.md §4): a Digi XBee 802.15.4 basestation in API mode 1 at the
port; the robot at a 16-bit address. connect() opens the port, asks for telemetry and
waits for the first 46-byte record. A reader thread parses every frame (bad checksums and
garbage are dropped and counted in :attr:`RoachDriver.stats`) and keeps the latest state.

Telemetry modes (``telemetry``; the robot YAML's ``driver: telemetry``), as the firmware has:
``stream``: records streamed after START_TELEMETRY; ``reply``: one record answers each
SET_VEL_GET_IMU / SET_THRUST_GET_IMU, nothing else comes (hardware.md §4.3/§4.6), so after
``link_timeout_s`` without a command the driver polls with SET_THRUST_GET_IMU(0, 0): zero
thrust (a setpoint that old is stale) and a record, fresh state and a watched link.

Commands: the twin's command interface is crank angular velocity [rad/s] (left, right);
write() clamps to the spec's velocity limits, converts to int16 counts/ms (truncated toward
zero, so the sent value never exceeds the limit) and sends SET_VEL_GET_IMU (0x96). It
returns the command actually sent, in rad/s.

Link loss (stream: no record for ``link_timeout_s``; reply: a command unanswered that long)
-> zero thrust, and every ``link_timeout_s`` while it lasts the driver asks again (stream:
SET_THRUST_OPEN_LOOP(0, 0) + START_TELEMETRY; reply: SET_THRUST_GET_IMU(0, 0)). read()
reports it with what to check in ``faults`` (``self_clearing``), :attr:`link_ok` is False,
write() sends zero thrust and returns zeros. The first valid record restores the link. A
vanished port (USB pulled) makes read()/write() raise PortMissingError; connect() works
again once the port is back.

read() -> DriverState: ``names`` the spec's joints (left_legs, right_legs); ``position`` the
unwrapped crank angles [rad] (int32 encoder rollover removed); ``velocity`` [rad/s] from
consecutive records and the board timestamps; ``effort`` NaN (not measured); ``extra``:
``gyro_{x,y,z}`` [rad/s], ``accel_{x,y,z}`` [m/s^2] (body frame, specific force),
``duty_{left,right}`` [fraction of full PWM], ``bemf_{left,right}`` and ``vbatt`` [ADC
counts], ``rssi_dbm`` [dBm], ``telemetry_age_s`` [s], ``sample_index``.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, fields

import numpy as np
import serial

from dexmpc_ros.core.robot_spec import RobotSpec, load_robot_spec
from dexmpc_ros.robots.roach import protocol as rp
from dexmpc_ros.robots.driver import (DeviceNotAnsweringError, Driver, DriverState,
                                      PortMissingError, check_serial_port)
from dexmpc_ros.wire.xbee import (API_RX16, API_TX_STATUS, FrameError, FrameParser, RxPacket16,
                                  TxRequest16, TxStatus)

log = logging.getLogger(__name__)

CABLE_HINT = 'check the XBee basestation USB cable'


@dataclass(frozen=True)
class RoachDriverConfig:
    """
    Settings of :class:`RoachDriver`.

    Attributes:
        port: serial device of the XBee basestation.
        baudrate: serial speed [bit/s] (hardware.md §4.1: 57600).
        robot_address: 16-bit 802.15.4 short address of the robot.
        link_timeout_s: link-loss budget T [s]: no telemetry for this long -> zero thrust.
        connect_timeout_s: wait for the first record per connect attempt [s].
        retries: further connect attempts after the first.
        timestamp_tick_s: board timestamp unit [s] (assumed 1 us, see roach_protocol).
        telemetry_samples: START_TELEMETRY count (default: stream until stopped).
        telemetry: the firmware's telemetry mode, ``stream`` or ``reply`` (module docstring).
    """

    port: str = '/dev/ttyUSB0'
    baudrate: int = 57600
    robot_address: int = 0x0001
    link_timeout_s: float = 0.3
    connect_timeout_s: float = 0.5
    retries: int = 3
    timestamp_tick_s: float = rp.TIMESTAMP_TICK_S
    telemetry_samples: int = rp.TELEMETRY_FOREVER
    telemetry: str = 'stream'

    def __post_init__(self) -> None:
        if not self.port:
            raise ValueError('port must not be empty')
        if self.baudrate <= 0:
            raise ValueError(f'baudrate must be > 0, got {self.baudrate}')
        if not 0 <= self.robot_address <= 0xFFFE:
            raise ValueError(f'robot_address must be 0..0xFFFE, got {self.robot_address:#x}')
        for name in ('link_timeout_s', 'connect_timeout_s', 'timestamp_tick_s'):
            value = getattr(self, name)
            if not 0 < value < 60:
                raise ValueError(f'{name} must be in (0, 60) s, got {value}')
        if self.retries < 0:
            raise ValueError(f'retries must be >= 0, got {self.retries}')
        if not 1 <= self.telemetry_samples <= rp.TELEMETRY_FOREVER:
            raise ValueError(f'telemetry_samples must be 1..2**32-1, got '
                             f'{self.telemetry_samples}')
        if self.telemetry not in rp.TELEMETRY_MODES:
            raise ValueError(f'telemetry must be one of {rp.TELEMETRY_MODES}, got '
                             f'{self.telemetry!r}')

    @classmethod
    def from_spec(cls, spec: RobotSpec, **overrides: object) -> RoachDriverConfig:
        """
        Fill port, baud rate, address and telemetry mode from the spec's ``driver:`` section.

        Raises:
            ValueError: an unknown override, or a ``driver:`` section this driver cannot
                serve (``api_mode`` other than 1, ``counts_per_rev`` other than 65536).
        """
        for key, supported in (('api_mode', 1), ('counts_per_rev', rp.COUNTS_PER_REV)):
            if spec.driver.get(key, supported) != supported:
                raise ValueError(f'{spec.source or spec.name}: driver.{key} is '
                                 f'{spec.driver[key]}, the roach driver supports {supported}')
        values = {'port': spec.driver.get('port', cls.port),
                  'baudrate': spec.driver.get('baud', cls.baudrate),
                  'robot_address': spec.driver.get('robot_address', cls.robot_address),
                  'telemetry': spec.driver.get('telemetry', cls.telemetry)}
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f'unknown RoachDriverConfig fields {sorted(unknown)}')
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class LinkStats:
    """Cumulative link counters since construction (frames, rejects, losses)."""

    records: int
    checksum_errors: int
    length_errors: int
    discarded_bytes: int
    foreign_frames: int
    tx_failures: int
    link_losses: int


class RoachDriver(Driver):
    """
    The VelociRoACH over an XBee serial radio (see the module docstring for the contract).

    Args:
        config: link settings.
        spec: robot spec (default ``load_robot_spec('roach')``): joint names, velocity limits.
    """

    def __init__(self, config: RoachDriverConfig, spec: RobotSpec | None = None):
        self.config = config
        self.spec = spec if spec is not None else load_robot_spec('roach')
        if len(self.spec.command_names) != 2 or len(self.spec.joints) != 2:
            raise ValueError(f'roach driver needs a spec with 2 actuated joints (left, right),'
                             f' got {self.spec.joint_names}')
        self.label = f'VelociRoACH on {config.port}'
        self._names = tuple(self.spec.joint_names)
        self._vmax = self.spec.limits_array('velocity')
        self._parser = FrameParser()
        self._tx_lock = threading.Lock()
        self._lock = threading.Lock()
        self._frame_ids = itertools.cycle(range(1, 256))
        self._serial: serial.Serial | None = None
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        self._first_record = threading.Event()
        self._echo = threading.Condition(self._lock)
        self._echoes: dict[bytes, float] = {}
        self._port_error: str | None = None
        self._connected = False
        self._counts = dict.fromkeys(('records', 'foreign_frames', 'tx_failures',
                                      'link_losses'), 0)
        self._reset_state()

    def _reset_state(self) -> None:
        self._record: rp.TelemetryRecord | None = None
        self._record_time = 0.0
        self._unwrapped = np.zeros(2)
        self._velocity = np.zeros(2)
        self._rssi = 0
        self._link_ok = True
        self._next_resend = 0.0
        self._last_request = 0.0                    # reply mode: last record-asking command
        self._awaiting_since: float | None = None   # reply mode: oldest unanswered one

    # Connection -------------------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        """True between a successful connect() and disconnect() while the port is there."""
        return self._connected and self._port_error is None

    @property
    def link_ok(self) -> bool:
        """False while the radio link is lost (module docstring); a valid record clears it."""
        return self._link_ok

    @property
    def stats(self) -> LinkStats:
        """Counters of frames, rejects and link losses."""
        p = self._parser
        return LinkStats(checksum_errors=p.checksum_errors, length_errors=p.length_errors,
                         discarded_bytes=p.discarded_bytes, **self._counts)

    def connect(self) -> None:
        """
        Open the port, start telemetry, wait for the first record.

        Raises:
            PortMissingError, PortPermissionError: the port is absent or not ours to open.
            DeviceNotAnsweringError: no record after ``1 + retries`` attempts.
        """
        if self.is_connected:
            return
        self._close()
        cfg = self.config
        check_serial_port(cfg.port, 'XBee radio', CABLE_HINT)
        try:
            self._serial = serial.Serial(cfg.port, cfg.baudrate, timeout=0.01, write_timeout=1.0)
        except (serial.SerialException, OSError) as exc:
            raise PortMissingError(f'cannot open {cfg.port} (XBee radio): {exc}',
                                   CABLE_HINT) from exc
        self._reset_state()
        self._parser.reset()
        self._first_record.clear()
        self._port_error = None
        self._stop.clear()
        self._record_time = time.monotonic()
        self._reader = threading.Thread(target=self._read_loop, name='roach-xbee', daemon=True)
        self._reader.start()
        self._connected = True
        attempts = 1 + cfg.retries
        for _ in range(attempts):
            if not self._replies:
                self._send(rp.start_telemetry(cfg.telemetry_samples))
            self._send_request(rp.set_vel_get_imu(0, 0))
            if self._first_record.wait(cfg.connect_timeout_s) or self._port_error:
                break
        self._raise_if_port_failed()
        if not self._first_record.is_set():
            self._close()
            raise DeviceNotAnsweringError(
                f'no VelociRoACH answering on {cfg.port} at {cfg.baudrate} baud (robot address '
                f'{cfg.robot_address:#06x}, {attempts} attempts of {cfg.connect_timeout_s} s)',
                'check the robot is powered and its XBee is paired with the basestation (same '
                'PAN ID and channel, robot address as configured), the basestation baud rate, '
                'and the port permissions (dialout group)')
        log.info('%s: connected, telemetry mode %s', self.label, cfg.telemetry)

    def disconnect(self) -> None:
        """Zero thrust and stop telemetry (if the port is still there), then close; idempotent."""
        if self._serial is not None and self._port_error is None:
            try:
                self._send(rp.set_thrust_open_loop(0, 0))
                if not self._replies:
                    self._send(rp.stop_telemetry())
            except PortMissingError:
                pass
        self._close()

    def _close(self) -> None:
        self._connected = False
        self._stop.set()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=2.0)
        self._reader = None
        if self._serial is not None:
            try:
                self._serial.close()
            except (serial.SerialException, OSError):
                pass
            self._serial = None

    def enable(self) -> None:
        """Start the robot's leg PID loops (PID_START_MOTORS)."""
        self._check_usable()
        self._send(rp.simple(rp.Cmd.PID_START_MOTORS))

    def disable(self) -> None:
        """Zero thrust and stop the leg PID loops."""
        self._check_usable()
        self._send(rp.set_thrust_open_loop(0, 0))
        self._send(rp.simple(rp.Cmd.PID_STOP_MOTORS))

    # Read / write -------------------------------------------------------------------------------
    def read(self) -> DriverState:
        """The latest telemetry as a DriverState (see the module docstring for the fields)."""
        self._check_usable()
        with self._lock:
            rec, stamp = self._record, self._record_time
            position = rp.counts_to_rad(self._unwrapped.copy())
            velocity, rssi, link_ok = self._velocity.copy(), self._rssi, self._link_ok
        if rec is None:       # connect() waits for a record; only reachable mid-connect
            raise DeviceNotAnsweringError(f'{self.label}: no telemetry yet', 'call connect()')
        gyro, accel, duty = rec.gyro_rad_s, rec.accel_m_s2, rec.duty_fraction
        age = time.monotonic() - stamp
        extra = {'gyro_x': gyro[0], 'gyro_y': gyro[1], 'gyro_z': gyro[2],
                 'accel_x': accel[0], 'accel_y': accel[1], 'accel_z': accel[2],
                 'duty_left': duty[0], 'duty_right': duty[1],
                 'bemf_left': float(rec.bemf_left), 'bemf_right': float(rec.bemf_right),
                 'vbatt': float(rec.vbatt), 'rssi_dbm': -float(rssi),
                 'telemetry_age_s': age, 'sample_index': float(rec.sample_index)}
        faults = () if link_ok else (self._link_lost_text(age),)
        return DriverState(names=self._names, position=position, velocity=velocity,
                           effort=np.full(2, np.nan), stamp=stamp,
                           extra={k: float(v) for k, v in extra.items()}, faults=faults,
                           self_clearing=True)

    def write(self, command: np.ndarray) -> np.ndarray:
        """
        Send crank velocity setpoints (2,) [rad/s], (left, right); return what was sent.

        Raises:
            ValueError: wrong shape or non-finite values (nothing is sent).
            NotConnectedError, PortMissingError: no link to send on.
        """
        self._check_usable()
        cmd = np.asarray(command, dtype=np.float64)
        if cmd.shape != (2,):
            raise ValueError(f'{self.label}: command must have shape (2,), got {cmd.shape}')
        if not np.isfinite(cmd).all():
            raise ValueError(f'{self.label}: command must be finite, got {cmd}')
        if not self._link_ok:
            self._send_zero_thrust()
            return np.zeros(2)
        clamped = np.clip(cmd, -self._vmax, self._vmax)
        counts = np.trunc(rp.rad_s_to_counts_per_ms(clamped))
        self._send_request(rp.set_vel_get_imu(int(counts[0]), int(counts[1])))
        return rp.counts_per_ms_to_rad_s(counts)

    def round_trip(self, timeout: float = 1.0) -> float:
        """
        Time one ECHO command from send to its echoed reply [s].

        Raises:
            DeviceNotAnsweringError: no echo within ``timeout``.
        """
        self._check_usable()
        token = f'rt{time.monotonic_ns() & 0xFFFFFFFF:08x}'.encode()
        start = time.monotonic()
        self._send(rp.simple(rp.Cmd.ECHO, token))
        with self._echo:
            if not self._echo.wait_for(lambda: token in self._echoes, timeout):
                raise DeviceNotAnsweringError(f'{self.label}: no echo within {timeout} s',
                                              'check the radio link')
            return self._echoes.pop(token) - start

    # Internals ----------------------------------------------------------------------------------
    @property
    def _replies(self) -> bool:
        return self.config.telemetry == 'reply'

    def _link_lost_text(self, age: float) -> str:
        budget = self.config.link_timeout_s
        return (f'radio link lost: no telemetry for {age:.2f} s (budget {budget} s), legs '
                f'commanded to zero thrust; check the robot is powered (battery) and in radio '
                f'range, and the XBee basestation (USB cable, power); telemetry resumes by '
                f'itself: the driver asks the robot every {budget} s and the first valid '
                f'record restores the link')

    def _send_request(self, payload: rp.Payload) -> None:
        if self._replies:
            with self._lock:
                self._last_request = now = time.monotonic()
                self._awaiting_since = now if self._awaiting_since is None else \
                    self._awaiting_since
        self._send(payload)

    def _send_zero_thrust(self) -> None:
        if self._replies:
            self._send_request(rp.set_thrust_get_imu(0, 0))
        else:
            self._send(rp.set_thrust_open_loop(0, 0))

    def _check_usable(self) -> None:
        self._raise_if_port_failed()
        self._require_connected()

    def _raise_if_port_failed(self) -> None:
        if self._port_error is not None:
            self._connected = False
            raise PortMissingError(self._port_error,
                                   f'{CABLE_HINT}, then call connect() again')

    def _send(self, payload: rp.Payload) -> None:
        ser = self._serial
        if ser is None:
            self._require_connected()
        frame = TxRequest16(self.config.robot_address, payload.encode(),
                            frame_id=next(self._frame_ids)).encode()
        try:
            with self._tx_lock:
                ser.write(frame)
        except (serial.SerialException, OSError) as exc:
            self._fail_port(exc)
            self._raise_if_port_failed()

    def _fail_port(self, exc: BaseException) -> None:
        if self._port_error is None:
            self._port_error = f'lost the XBee radio on {self.config.port} ({exc})'
            self._link_ok = False
            log.error('%s: %s', self.label, self._port_error)

    def _read_loop(self) -> None:
        ser = self._serial
        while not self._stop.is_set():
            try:
                data = ser.read(max(1, ser.in_waiting))
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                if not self._stop.is_set():
                    self._fail_port(exc)
                return
            if data:
                for frame in self._parser.feed(data):
                    self._handle(frame)
            try:
                self._watch_link(time.monotonic())
            except PortMissingError:
                return

    def _handle(self, frame) -> None:
        if frame.api_id == API_TX_STATUS:
            try:
                if TxStatus.from_frame(frame).status != 0:
                    self._counts['tx_failures'] += 1
            except FrameError:
                self._counts['foreign_frames'] += 1
            return
        try:
            if frame.api_id != API_RX16:
                raise FrameError(f'unexpected API id {frame.api_id:#04x}')
            packet = RxPacket16.from_frame(frame)
            if packet.source != self.config.robot_address:
                raise FrameError(f'packet from {packet.source:#06x}')
            payload = rp.Payload.decode(packet.rf_data)
            if payload.type == rp.Cmd.GET_IMU_DATA:
                self._on_record(rp.TelemetryRecord.unpack(payload.data), packet.rssi)
            elif payload.type == rp.Cmd.ECHO:
                with self._echo:
                    self._echoes[payload.data] = time.monotonic()
                    self._echo.notify_all()
        except (FrameError, rp.ProtocolError) as exc:
            self._counts['foreign_frames'] += 1
            log.debug('%s: ignored frame: %s', self.label, exc)

    def _on_record(self, rec: rp.TelemetryRecord, rssi: int) -> None:
        now = time.monotonic()
        with self._lock:
            prev = self._record
            if prev is None:
                self._unwrapped = np.array([rec.pos_left, rec.pos_right], dtype=np.float64)
            else:
                delta = np.array([rp.wrap_int32(rec.pos_left - prev.pos_left),
                                  rp.wrap_int32(rec.pos_right - prev.pos_right)], dtype=float)
                self._unwrapped += delta
                ticks = (rec.timestamp - prev.timestamp) & 0xFFFFFFFF
                if 0 < ticks < 0x80000000:
                    self._velocity = rp.counts_to_rad(delta) / (ticks *
                                                                self.config.timestamp_tick_s)
            self._record, self._record_time, self._rssi = rec, now, rssi
            self._awaiting_since = None
            self._counts['records'] += 1
            recovered = not self._link_ok and self._port_error is None
            if recovered:
                self._link_ok = True
        if recovered:
            log.warning('%s: radio link restored', self.label)
        self._first_record.set()

    def _watch_link(self, now: float) -> None:
        """Reader thread: detect a lost link, poll (reply mode), ask again while lost."""
        budget = self.config.link_timeout_s
        if self._link_ok:
            if not self._first_record.is_set():
                return
            with self._lock:
                waited = (now - self._record_time if not self._replies else
                          0.0 if self._awaiting_since is None else now - self._awaiting_since)
                idle = now - self._last_request
            if waited <= budget:
                if self._replies and idle >= budget:
                    self._send_zero_thrust()            # the poll: fresh state, link watched
                return
            with self._lock:
                self._link_ok = False
            self._counts['link_losses'] += 1
            log.warning('%s: no telemetry for %.2f s: radio link lost, zero thrust',
                        self.label, now - self._record_time)
        elif now < self._next_resend:
            return
        self._next_resend = now + budget
        self._send_zero_thrust()
        if not self._replies:
            self._send(rp.start_telemetry(self.config.telemetry_samples))
