"""
WidowX 250 6DOF (wx250s) driver: nine Dynamixel X-series servos over a U2D2, Protocol 2.0.

Uses the real ``dynamixel_sdk`` (hardware.md §2.5)::

    with WidowXDriver(WidowXDriverConfig(port='/dev/ttyDXL')) as arm:   # connect()
        arm.enable()                       # goal := present position, then torque on
        state = arm.read()                 # DriverState, spec joint order, SI units
        sent = arm.write(command)          # (7,) six arm joints [rad] + left_finger [m]
        arm.disable()                      # torque off on all nine (the arm goes limp)

``connect()`` leaves torque off: it pings every servo, checks its model number, then
writes operating mode and drive mode (reverse on the mirrored servos; EEPROM, so torque
must be off) and the motion profile. ``read()`` is one sync read of present current,
velocity and position (addresses 126-135) of all nine servos; every
``slow_read_divider``-th call also reads voltage, temperature and Hardware Error Status.
Each servo's status ERR byte is checked: the Alert bit raises :class:`HardwareFaultError`
naming the fault (the servo shuts its torque off itself); :meth:`clear_faults` reboots
the faulted servos, restores what the reboot reset and checks the fault is gone
(:meth:`reboot` does one servo unchecked). A fault already latched at connect() is only
recorded in ``faults`` (and logged), so the driver connects and can clear it; read() and
enable() raise until then.

Communication errors (no reply, CRC, partial packet) are retried ``retries`` times (a
read only within ``read_budget_ms``), then raise :class:`DeviceNotAnsweringError`
(:class:`BusSilentError`: nothing answered; :class:`PartialReadError`: named servos did
not, with the others' state); a vanished port (cable pulled) raises
:class:`PortMissingError` and marks the driver disconnected, so a later ``connect()``
after re-plugging works. Unit conversions and the servo table: ``servos.py``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace

import numpy as np

from dexmpc_ros.core.robot_spec import RobotSpec, load_robot_spec
from dexmpc_ros.wire import dynamixel_protocol as dxl
from dexmpc_ros.robots.driver import (DeviceNotAnsweringError, Driver, DriverError, DriverState,
                                      HardwareFaultError, TorqueOffError, WrongDeviceError,
                                      check_serial_port)
from dexmpc_ros.robots.widowx.dynamixel_client import DynamixelClient, SyncReadIncompleteError
from dexmpc_ros.robots.widowx.servos import (Servo, gripper_linkage, joint_state_from_replies,
                                             rad_to_tick, tick_limits, tick_to_rad, wx250s_servos)

log = logging.getLogger(__name__)

HINT_BUS = ('check the U2D2 cable and permissions (dialout group), the servos\' 12 V supply '
            'and that they run at the configured baud rate')
_SDK_BAUDS = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600,
              1000000, 1152000, 2000000, 2500000, 3000000, 3500000, 4000000)
_POSITION_MODES = ('position', 'extended_position', 'current_based_position')
_X = dxl.X_SERIES
_STATE = (_X['present_current'].address, 10)       # current 2 + velocity 4 + position 4
_SLOW = (_X['present_input_voltage'].address, 3)    # voltage 2 + temperature 1


@dataclass(frozen=True)
class WidowXDriverConfig:
    """
    Settings of :class:`WidowXDriver`.

    Attributes:
        port: serial device of the U2D2 (udev symlink /dev/ttyDXL).
        baudrate: bus speed [bit/s]; the servos' Baud Rate register must match.
        protocol: Dynamixel protocol version; only 2.0.
        retries: extra attempts after a failed transaction (no reply, CRC, partial).
        retry_pause_ms: pause before a retry, letting a late reply drain [ms].
        sync_read_timeout_ms: reply budget of one state sync read (all servos) [ms].
        read_budget_ms: longest a read() retries a sync read for [ms]; 0 = one control
            period of the robot (spec control_rate_hz).
        reboot_timeout_s: how long :meth:`WidowXDriver.reboot` waits for the servo [s].
        operating_mode: arm servos' mode: position, extended_position or
            current_based_position (``dynamixel_protocol.OPERATING_MODES``).
        gripper_operating_mode: the gripper's (XL430: position or extended_position).
        time_profile: True: Drive Mode bit2, profile values are times [ms].
        profile_velocity: Profile Velocity [0.229 rpm; 131 = pi rad/s] (or move time [ms]).
        profile_acceleration: Profile Acceleration [214.577 rev/min^2; 40 = 15 rad/s^2]
            (or ramp time [ms]); 0 = unlimited.
        slow_read_divider: voltage/temperature/error status every N-th read().
        shadow_tolerance_rad: a shadow further than this from its master is a fault [rad].
    """

    port: str = '/dev/ttyDXL'
    baudrate: int = 1_000_000
    protocol: float = 2.0
    retries: int = 2
    retry_pause_ms: float = 1.0
    sync_read_timeout_ms: float = 34.0
    read_budget_ms: float = 0.0
    reboot_timeout_s: float = 1.0
    operating_mode: str = 'position'
    gripper_operating_mode: str = 'position'
    time_profile: bool = False
    profile_velocity: int = 131
    profile_acceleration: int = 40
    slow_read_divider: int = 10
    shadow_tolerance_rad: float = 0.08

    def __post_init__(self) -> None:
        if not self.port:
            raise ValueError('port must not be empty')
        if self.baudrate not in _SDK_BAUDS:
            raise ValueError(f'baudrate {self.baudrate} is not one dynamixel_sdk supports '
                             f'({", ".join(map(str, _SDK_BAUDS))})')
        if self.protocol != 2.0:
            raise ValueError(f'protocol must be 2.0 (X-series), got {self.protocol}')
        if not 0 <= self.retries <= 20:
            raise ValueError(f'retries must be in 0..20, got {self.retries}')
        for name in ('retry_pause_ms', 'sync_read_timeout_ms', 'read_budget_ms',
                     'reboot_timeout_s', 'shadow_tolerance_rad'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f'{name} must be finite and >= 0, got {value}')
        if self.operating_mode not in _POSITION_MODES:
            raise ValueError(f'operating_mode must be one of {_POSITION_MODES}, got '
                             f'{self.operating_mode!r}')
        if self.gripper_operating_mode not in _POSITION_MODES[:2]:
            raise ValueError(f'gripper_operating_mode must be one of {_POSITION_MODES[:2]} '
                             f'(XL430-W250), got {self.gripper_operating_mode!r}')
        for name in ('profile_velocity', 'profile_acceleration'):
            if not 0 <= getattr(self, name) <= 32767:
                raise ValueError(f'{name} must be in 0..32767, got {getattr(self, name)}')
        if self.slow_read_divider < 1:
            raise ValueError(f'slow_read_divider must be >= 1, got {self.slow_read_divider}')

    @classmethod
    def from_spec(cls, spec: RobotSpec, **overrides) -> 'WidowXDriverConfig':
        """Port, baud rate and protocol from ``spec.driver``, then ``overrides``."""
        d = spec.driver
        base = cls(port=str(d.get('port', cls.port)),
                   baudrate=int(d.get('baud', cls.baudrate)),
                   protocol=float(d.get('protocol', cls.protocol)))
        return replace(base, **overrides)


class WidowXDriver(Driver):
    """
    The wx250s on a Dynamixel bus.

    Args:
        config: driver settings (default: ``WidowXDriverConfig.from_spec(spec)``).
        spec: robot spec (default ``load_robot_spec('widowx')``): joint order, limits,
            servo IDs and gripper geometry (``driver:`` section).
    """

    def __init__(self, config: WidowXDriverConfig | None = None,
                 spec: RobotSpec | None = None):
        self.spec = spec or load_robot_spec('widowx')
        self.config = config or WidowXDriverConfig.from_spec(self.spec)
        self.servos = wx250s_servos(self.spec.driver)
        self.linkage = gripper_linkage(self.spec.driver)
        self.label = f'WidowX 250 on {self.config.port}'
        self._by_id = {s.id: s for s in self.servos}
        self._ids = [s.id for s in self.servos]
        self._limits = {s.id: tick_limits(s, self.spec, self.linkage) for s in self.servos}
        self._masters = [next(s for s in self.servos if s.joint == name and not s.is_shadow)
                         for name in self.spec.command_names]
        self._cmd_low = self.spec.limits_array('lower')
        self._cmd_high = self.spec.limits_array('upper')
        cfg = self.config
        #: how long one read() may retry [s] (``read_budget_ms``)
        self.read_budget_s = cfg.read_budget_ms / 1000 or self.spec.period_s
        #: the bus client, for registers beyond read()/write() (LED, gains, ...)
        self.bus = DynamixelClient(cfg.port, cfg.baudrate, {s.id: s.name for s in self.servos},
                                   HINT_BUS, cfg.retries, cfg.retry_pause_ms,
                                   cfg.sync_read_timeout_ms, on_alert=self._raise_fault)
        self._connected = self._enabled = self._connecting = False
        self._reads = 0
        self._extra: dict[str, float] = {}
        self.faults: tuple[str, ...] = ()

    # Connection ------------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        return self._connected and self.bus.is_open     # a lost port disconnects

    @property
    def is_enabled(self) -> bool:
        """True between enable() and disable() (torque on)."""
        return self._enabled and self.is_connected

    def connect(self) -> None:
        """Open the port, identify all nine servos and configure them; torque stays off."""
        if self.is_connected:
            return
        check_serial_port(self.config.port, 'Dynamixel bus', 'check the U2D2 cable')
        self.bus.open()
        self._connecting, self.faults = True, ()
        try:
            self._identify()
            self._configure()
        except BaseException:
            self.bus.close()
            raise
        finally:
            self._connecting = False
        self._connected, self._enabled, self._reads = True, False, 0
        log.info('%s: %d servos identified and configured (torque off)', self.label,
                 len(self.servos))

    def disconnect(self) -> None:
        """Close the port; the servos keep their torque state (call disable() to relax)."""
        self._connected = self._enabled = False
        self.bus.close()

    def _identify(self) -> None:
        for n, servo in enumerate(self.servos):
            try:
                model = self.bus.ping(servo.id)
            except DeviceNotAnsweringError as exc:
                if n == 0:
                    raise DeviceNotAnsweringError(
                        f'no Dynamixel on {self.config.port} (servo {servo.id} '
                        f'"{servo.name}" did not answer a ping)', HINT_BUS) from exc
                raise
            if model != servo.model:
                raise WrongDeviceError(
                    f'servo {servo.id} ({servo.name}) is a {_model_name(model)}, expected a '
                    f'{_model_name(servo.model)}',
                    'check that this is a wx250s and its servo IDs match driver.servo_ids '
                    'in config/robots/widowx.yaml (Dynamixel Wizard shows them)')

    def _configure(self) -> None:
        for servo in self.servos:
            self._configure_servo(servo)

    def _configure_servo(self, servo: Servo, check_alert: bool = True) -> None:
        """Torque off, operating + drive mode (EEPROM: written only on change), profile.

        A reboot keeps the EEPROM modes but resets the RAM profile to 0 (= unlimited), so
        this is also what a rebooted servo needs (``check_alert=False`` there: a fault that
        survived the reboot is reported by :meth:`clear_faults`, not by a write).
        """
        cfg, bus = self.config, self.bus
        mode_name = cfg.gripper_operating_mode if servo.name == 'gripper' \
            else cfg.operating_mode
        drive = (dxl.DRIVE_MODE_REVERSE if servo.reverse else 0) | (
            dxl.DRIVE_MODE_TIME_PROFILE if cfg.time_profile else 0)
        bus.write(servo.id, 'torque_enable', 0, check_alert=check_alert)
        for name, value in (('operating_mode', dxl.OPERATING_MODES[mode_name]),
                            ('drive_mode', drive)):
            if bus.read(servo.id, name, check_alert=check_alert) != value:
                bus.write(servo.id, name, value, check_alert=check_alert)
        # Drive Mode first: it decides whether the profile values are velocities or times.
        bus.write(servo.id, 'profile_acceleration', cfg.profile_acceleration,
                  check_alert=check_alert)
        bus.write(servo.id, 'profile_velocity', cfg.profile_velocity, check_alert=check_alert)

    # Enable / disable ------------------------------------------------------------------
    def enable(self) -> None:
        """Goal := present position on every servo, then torque on (no jump)."""
        self._require_connected()
        state = self.bus.sync_read(*_STATE, self._ids)
        self.bus.sync_write('goal_position', {i: _field(d, 132, 4) for i, d in state.items()})
        for servo in self.servos:
            self.bus.write(servo.id, 'torque_enable', 1)
        self._enabled = True
        log.info('%s: torque on, holding the present pose', self.label)

    def disable(self) -> None:
        """
        Torque off on every servo: the arm goes limp (support it first).

        One sync write reaches every servo that hears (also one that cannot answer), then
        each is written again and confirmed; one that fails does not stop the others.

        Raises:
            TorqueOffError: naming every servo that did not confirm (may still be powered).
        """
        self._enabled = False
        failed: dict[str, str] = {}
        try:
            self._require_connected()
            self.bus.sync_write('torque_enable', dict.fromkeys(self._ids, 0))
        except DriverError as exc:    # each servo is still tried (and fails) below
            log.warning('%s: torque-off sync write failed: %s', self.label, exc)
        for servo in self.servos:
            try:
                self._require_connected()         # a lost port fails the rest at once
                self.bus.write(servo.id, 'torque_enable', 0, check_alert=False)
            except DriverError as exc:
                failed[servo.label] = exc.message.removeprefix(f'{servo.label} ')
        if failed:
            raise _torque_off_error(self.label, failed,
                                    len(failed) == len(self.servos) and self.is_connected)
        log.info('%s: torque off', self.label)

    def reboot(self, servo: str | int) -> None:
        """
        Reboot one servo (by motor name or ID): clears its Hardware Error Status.

        Waits until it answers a ping again (``reboot_timeout_s``), restores what the
        reboot reset (see :meth:`clear_faults`) and leaves its torque off; call
        :meth:`enable` to resume.

        Raises:
            DeviceNotAnsweringError: the servo did not come back within the timeout.
        """
        self._require_connected()
        target = self._servo(servo)
        self._reboot([target])
        self.faults = tuple(f for f in self.faults if not f.startswith(f'servo {target.id} ('))

    def clear_faults(self) -> None:
        """
        Reboot every servo whose Hardware Error Status is non-zero, then check it cleared.

        A Protocol 2.0 REBOOT clears the error, switches torque off and resets the RAM
        registers (addresses 64+) to their defaults: torque enable, goal position, profile
        acceleration/velocity (to 0 = unlimited: re-written here), LED, gains. The EEPROM
        (0-63: operating mode, drive mode, Secondary ID, limits) survives; it is verified
        anyway. Healthy servos are left alone (they keep holding). The driver is left
        disabled: call :meth:`enable` (goal := present, torque on) to resume.

        Raises:
            HardwareFaultError: a servo still reports a hardware error after its reboot
                (named in the message): the cause persists (heat, supply, a stuck load).
            DeviceNotAnsweringError: a rebooted servo did not answer within
                ``reboot_timeout_s``, or the bus did not answer the status read.
        """
        self._require_connected()
        bits = self._error_bits()
        bad = [self._by_id[i] for i, b in bits.items() if b]
        if not bad:
            self.faults = ()
            return
        log.warning('%s: clearing faults by reboot: %s', self.label,
                    '; '.join(_describe(self._by_id[i], b) for i, b in bits.items() if b))
        self._reboot(bad)
        still = {i: b for i, b in self._error_bits().items() if b}
        self.faults = tuple(_describe(self._by_id[i], b) for i, b in still.items())
        if still:
            raise HardwareFaultError(
                f'{self.label}: hardware fault persists after reboot: {"; ".join(self.faults)}',
                'the cause is still there: remove the load, let the servo cool, check the '
                '12 V supply and the servo\'s cable, then call recover again')
        log.info('%s: faults cleared (rebooted %s); torque off until enable()', self.label,
                 ', '.join(f'{s.id} {s.name}' for s in bad))

    def _reboot(self, servos: list[Servo]) -> None:
        """REBOOT ``servos``, wait until each answers a ping, re-apply their settings."""
        self._enabled = False
        for servo in servos:
            self.bus.reboot(servo.id)
        deadline = time.monotonic() + self.config.reboot_timeout_s
        for servo in servos:
            while True:
                time.sleep(0.01)          # a rebooting servo is deaf for a while
                try:
                    self.bus.ping(servo.id, check_alert=False)
                    break
                except DeviceNotAnsweringError as exc:
                    if time.monotonic() > deadline:
                        raise DeviceNotAnsweringError(
                            f'{self.label}: servo {servo.id} ({servo.name}) did not answer '
                            f'within {self.config.reboot_timeout_s} s of its reboot',
                            HINT_BUS) from exc
            self._configure_servo(servo, check_alert=False)
            log.info('%s: servo %d (%s) rebooted', self.label, servo.id, servo.name)
        self._reads = 0               # next read() refreshes voltage/temperature/errors

    def _error_bits(self) -> dict[int, int]:
        """Hardware Error Status of every servo, {id: bits}, without raising on alerts."""
        raw = self.bus.sync_read(_X['hardware_error_status'].address, 1, self._ids,
                                 check_alert=False)
        return {i: data[0] for i, data in raw.items()}

    # Read / write ----------------------------------------------------------------------
    def read(self) -> DriverState:
        """
        Present position, velocity and effort of every joint (spec order, SI units).

        Raises:
            HardwareFaultError: a servo reports a hardware error (named in the message).
            PartialReadError: named servos gave no valid reply within ``read_budget_s``;
                ``state``: the others' reading (``joint_state_from_replies``).
            BusSilentError / DeviceNotAnsweringError: no servo / no valid reply answered.
            PortMissingError: the port vanished (the driver is then disconnected).
        """
        self._require_connected()
        deadline = time.monotonic() + self.read_budget_s
        raw: dict[int, bytes] = {}
        try:
            raw = self.bus.sync_read(*_STATE, self._ids, deadline=deadline)
            if self._reads % self.config.slow_read_divider == 0:
                self._read_slow(deadline)
            self._reads += 1
        except SyncReadIncompleteError as exc:     # raw is empty unless the slow read failed
            state = self._state(raw or exc.replies)
            exc.state = replace(state, faults=state.faults + tuple(
                f'{name}: not answering' for name in exc.silent))
            raise
        return self._state(raw)

    def _state(self, raw: dict[int, bytes]) -> DriverState:
        """A DriverState from state sync-read replies {id: data}; NaN where one is missing."""
        position, velocity, effort, faults = joint_state_from_replies(
            raw, _STATE[0], self.servos, self.spec.joint_names, self.linkage,
            self.config.shadow_tolerance_rad)
        return DriverState(tuple(self.spec.joint_names), position, velocity, effort,
                           time.monotonic(), dict(self._extra), faults)

    def write(self, command: np.ndarray) -> np.ndarray:
        """
        Send position goals (7,): six arm joints [rad], ``left_finger`` [m].

        Clamped to the spec's joint limits; shadows get their master's tick value.

        Returns:
            (7,) the goals actually sent, converted back from ticks (SI units).
        Raises:
            ValueError: wrong shape or non-finite values.
        """
        self._require_connected()
        cmd = np.asarray(command, dtype=np.float64)
        if cmd.shape != self._cmd_low.shape or not np.all(np.isfinite(cmd)):
            raise ValueError(f'{self.label}: command needs {self._cmd_low.shape[0]} finite '
                             f'values ({", ".join(self.spec.command_names)}), got {cmd}')
        cmd = np.clip(cmd, self._cmd_low, self._cmd_high)
        goals, sent = {}, np.empty_like(cmd)
        for k, servo in enumerate(self._masters):
            angle = self.linkage.angle(cmd[k]) if servo.joint == 'left_finger' else cmd[k]
            lo, hi = self._limits[servo.id]
            tick = int(np.clip(rad_to_tick(angle), lo, hi))
            for s in self.servos:
                if s.joint == servo.joint:
                    goals[s.id] = tick
            back = tick_to_rad(tick)
            sent[k] = self.linkage.finger(back) if servo.joint == 'left_finger' else back
        self.bus.sync_write('goal_position', goals)
        return sent

    # Helpers ---------------------------------------------------------------------------
    def _read_slow(self, deadline: float) -> None:
        raw = self.bus.sync_read(*_SLOW, self._ids, deadline=deadline)
        errors = self.bus.sync_read(_X['hardware_error_status'].address, 1, self._ids,
                                    deadline=deadline)
        for dxl_id, data in raw.items():
            name = self._by_id[dxl_id].name
            self._extra[f'voltage_{name}'] = _field(data, 144, 2, _SLOW[0]) * dxl.VOLTAGE_UNIT_V
            self._extra[f'temperature_{name}'] = float(data[2])
        bad = [i for i, data in errors.items() if data[0]]
        if bad:
            self._raise_fault(bad, {i: errors[i][0] for i in bad})

    def _raise_fault(self, ids: list[int], bits: dict[int, int] | None = None) -> None:
        if bits is None:
            bits = {i: self.bus.read(i, 'hardware_error_status', check_alert=False)
                    for i in ids}
        self.faults = tuple(_describe(self._by_id[i], b) for i, b in bits.items() if b)
        self._enabled = False
        if self._connecting:     # connect anyway, so that reboot() can clear it
            log.warning('%s: hardware fault at connect: %s', self.label, '; '.join(self.faults))
            return
        raise HardwareFaultError(
            f'{self.label}: hardware fault: {"; ".join(self.faults) or "alert bit set"}',
            'the servo switched its torque off; remove the load or let it cool, check the '
            'supply, then reboot it: driver.clear_faults() (the driver node\'s ~/recover '
            'service), then enable() again')

    def _servo(self, key: str | int) -> Servo:
        for servo in self.servos:
            if key in (servo.name, servo.id):
                return servo
        raise ValueError(f'{self.label}: no servo {key!r}; servos: '
                         f'{", ".join(f"{s.id} {s.name}" for s in self.servos)}')


def _field(data: bytes, address: int, size: int, start: int = _STATE[0]) -> int:
    """Signed register ``address`` out of a sync-read block that began at ``start``."""
    return dxl.from_bytes(data[address - start:address - start + size], signed=True)


def _describe(servo: Servo, bits: int) -> str:
    """'servo 2 (shoulder): overload' from a Hardware Error Status byte."""
    return f'servo {servo.id} ({servo.name}): {", ".join(dxl.decode_hardware_error(bits))}'


def _torque_off_error(label: str, failed: dict[str, str], silent_bus: bool) -> TorqueOffError:
    """One error naming every servo whose torque-off was not confirmed (``failed``: why)."""
    whys = list(dict.fromkeys(failed.values()))     # distinct reasons, in servo order
    what = ('no servo answered (the bus is silent: its supply or cable); ' if
            silent_bus else '') + '; '.join(whys)
    return TorqueOffError(
        f'{label}: torque off not confirmed by {", ".join(failed)}: they may still be '
        f'powered ({what})', 'keep clear of the arm; cut the servos\' 12 V supply if it '
        'must go limp now, then fix the bus and call disable() again', tuple(failed))


def _model_name(model: int) -> str:
    return f'{dxl.MODEL_NAMES.get(model, "unknown model")} (model number {model})'
