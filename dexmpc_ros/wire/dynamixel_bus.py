"""
A bus of emulated Dynamixel X-series servos speaking Protocol 2.0 on a pseudo-terminal.

The real ``dynamixel_sdk`` opens ``emulator.path`` as if it were the U2D2's port. Each
servo has its own control-table memory (hardware.md §2.4) and answers PING, READ, WRITE,
SYNC_READ, SYNC_WRITE and REBOOT with proper status packets, honouring the Secondary
(shadow) ID, Status Return Level, EEPROM write protection while torque is on, position
limits and the Alert bit. Replies are delayed by their wire time at the bus baud rate
(10 bits per byte) plus the servo's Return Delay Time.

Motion comes from a physics hook called on the emulator's own clock every
``physics_period_s`` with each servo's :class:`MotorInput` (register units); it returns
:class:`MotorOutput` (present position/velocity/current). :class:`FirstOrderPhysics` is
the default. The bus knows no robot: ``robots/widowx/emulator.py`` builds the arm's nine
servos on it (and can use the WidowX MuJoCo twin as the physics, for hardware-in-the-loop
runs).

Faults to inject: :meth:`no_reply` (servos that hear but cannot answer, or with
``deaf=True`` neither hear nor answer, as behind a cut daisy-chain cable; all IDs = a
silent bus), :meth:`corrupt_crc`, :meth:`truncate_replies`, :meth:`set_hardware_error`,
:meth:`unplug` / :meth:`replug`.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from dexmpc_ros.wire import dynamixel_protocol as dxl
from dexmpc_ros.wire.pty_link import PtyLink
from dexmpc_ros.wire.dynamixel_protocol import X_SERIES, Instruction, Packet

log = logging.getLogger(__name__)

_INSTRUCTION_NAMES = {int(i): i.name.lower() for i in Instruction}
_RAM_DEFAULTS = {'profile_acceleration': 0, 'profile_velocity': 0, 'led': 0,
                 'torque_enable': 0, 'goal_current': 0, 'goal_velocity': 0}


class EmulatedServo:
    """
    Control-table memory of one X-series servo.

    Args:
        dxl_id: ID (also written at address 7).
        model: model number (``dxl.XM430_W350`` / ``dxl.XL430_W250``).
        position: initial present (and goal) position [ticks].
        secondary_id: Secondary (shadow) ID; 255 = disabled.
        **registers: further initial values by ``X_SERIES`` name.
    """

    def __init__(self, dxl_id: int, model: int, position: int = 2048,
                 secondary_id: int = 255, **registers: int):
        self.mem = bytearray(256)
        self.busy_until = 0.0           # rebooting until then: deaf
        defaults = dict(model_number=model, firmware_version=45, id=dxl_id, baud_rate=3,
                        return_delay_time=0, drive_mode=0, operating_mode=3,
                        secondary_id=secondary_id, temperature_limit=80,
                        velocity_limit=131, max_position_limit=4095, min_position_limit=0,
                        shutdown=52, status_return_level=2, goal_position=position,
                        present_position=position, present_input_voltage=120,
                        present_temperature=35)
        defaults.update(registers)
        self.mem[13] = 2                 # Protocol Type
        for name, value in defaults.items():
            self.set(name, value)

    @property
    def id(self) -> int:
        """The servo's ID."""
        return self.mem[7]

    def get(self, name: str) -> int:
        """Register value by ``X_SERIES`` name (signed where the register is)."""
        item = X_SERIES[name]
        return dxl.from_bytes(self.mem[item.address:item.address + item.size], item.signed)

    def set(self, name: str, value: int) -> None:
        """Set a register by name, bypassing access rules (the servo's own side)."""
        item = X_SERIES[name]
        self.mem[item.address:item.address + item.size] = dxl.to_bytes(value, item.size)

    def write(self, address: int, data: bytes) -> int:
        """Apply a WRITE from the bus; return the status error number (0 = done)."""
        end = address + len(data)
        if not data or end > len(self.mem):
            return 5                                   # data length error
        if any(lo < end and address < hi for lo, hi in dxl.READ_ONLY_RANGES) or \
                (address <= 8 and end > 7):            # ID/baud changes: not emulated
            return 7                                   # access error
        if address < 64 and self.get('torque_enable'):
            return 7                                   # EEPROM locked while torque is on
        goal = X_SERIES['goal_position']
        if address <= goal.address and end >= goal.address + goal.size and \
                self.get('operating_mode') == 3:
            value = dxl.from_bytes(data[goal.address - address:][:goal.size], signed=True)
            if not self.get('min_position_limit') <= value <= self.get('max_position_limit'):
                return 6                               # data limit error
        self.mem[address:end] = data
        return 0

    def reboot(self, now: float, duration: float) -> None:
        """Clear hardware errors, torque off, RAM back to defaults; deaf for ``duration``."""
        for name, value in _RAM_DEFAULTS.items():
            self.set(name, value)
        self.set('hardware_error_status', 0)
        self.set('goal_position', self.get('present_position'))
        self.busy_until = now + duration


@dataclass(frozen=True)
class MotorInput:
    """What a servo asks of the physics (register units, the servo's own frame)."""

    torque_on: bool
    goal: int                 # ticks
    present: int              # ticks
    reverse: bool             # Drive_Mode bit0
    profile_velocity: int     # 0.229 rpm (0 = Velocity Limit)
    velocity_limit: int       # 0.229 rpm


@dataclass(frozen=True)
class MotorOutput:
    """Physics result: present position [ticks], velocity [0.229 rpm], current/load raw."""

    position: int
    velocity: int
    current: int


Physics = Callable[[dict[int, MotorInput], float], dict[int, MotorOutput]]


class FirstOrderPhysics:
    """
    Each torque-on servo approaches its goal exponentially (time constant ``tau_s``),
    no faster than its profile velocity (or Velocity Limit when that is 0); torque-off
    servos stay put. Current is a P term on the remaining error, saturated.
    """

    def __init__(self, tau_s: float = 0.03, current_per_tick: float = 2.0,
                 max_current: int = 1193):
        if not tau_s > 0:
            raise ValueError(f'tau_s must be > 0, got {tau_s}')
        self.tau_s, self.current_per_tick, self.max_current = tau_s, current_per_tick, max_current

    def __call__(self, inputs: dict[int, MotorInput], dt: float) -> dict[int, MotorOutput]:
        out = {}
        for dxl_id, m in inputs.items():
            if not m.torque_on:
                out[dxl_id] = MotorOutput(m.present, 0, 0)
                continue
            limit = m.profile_velocity or m.velocity_limit or 1023
            max_step = limit * dxl.VELOCITY_UNIT_RAD_S * dt * 4096 / (2 * math.pi)
            error = m.goal - m.present
            step = error * (1 - math.exp(-dt / self.tau_s))
            step = max(-max_step, min(max_step, step))
            move = min(abs(error), math.ceil(abs(step)))     # at least a tick per step
            position = m.present + int(math.copysign(move, error))
            velocity = round((position - m.present) / dt * 2 * math.pi / 4096
                             / dxl.VELOCITY_UNIT_RAD_S)
            current = max(-self.max_current, min(self.max_current, round(
                self.current_per_tick * (m.goal - position))))
            out[dxl_id] = MotorOutput(position, velocity, current)
        return out


class DynamixelBusEmulator:
    """
    Serve ``servos`` on a PtyLink from a background thread.

    Args:
        servos: the servos on the bus (distinct IDs).
        link: the pty to serve (default: a new one); ``path`` is where clients connect.
        physics: the motion model (default :class:`FirstOrderPhysics`).
        physics_period_s: how often the physics runs on the emulator's clock [s].
        baudrate: bus speed for the wire-time delay [bit/s]; 0 disables the delay.
        reboot_s: how long a rebooting servo stays deaf [s].
    """

    def __init__(self, servos: Iterable[EmulatedServo], link: PtyLink | None = None,
                 physics: Physics | None = None, physics_period_s: float = 0.002,
                 baudrate: int = 1_000_000, reboot_s: float = 0.02):
        self.servos = {s.id: s for s in servos}
        if not physics_period_s > 0:
            raise ValueError(f'physics_period_s must be > 0, got {physics_period_s}')
        self.link = link if link is not None else PtyLink()
        self.physics = physics if physics is not None else FirstOrderPhysics()
        self.physics_period_s = physics_period_s
        self.baudrate = baudrate
        self.reboot_s = reboot_s
        #: (id, address, data, error) of every write the servos received, newest last
        self.write_log: collections.deque = collections.deque(maxlen=4096)
        #: packets by instruction name ('sync_read', ...), bad frames, physics overruns
        self.stats: collections.Counter = collections.Counter()
        #: the IDs each SYNC_READ asked for, newest last
        self.sync_read_ids: collections.deque = collections.deque(maxlen=256)
        self._lock = threading.RLock()
        self._parser = dxl.StreamParser()
        self._silent: set[int] = set()
        self._deaf: set[int] = set()
        self._corrupt = 0
        self._truncate = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> str:
        """Port path for the client (a symlink to the pty)."""
        return self.link.path

    # Lifecycle ---------------------------------------------------------------------
    def start(self) -> 'DynamixelBusEmulator':
        """Start serving in a daemon thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name='dynamixel-bus',
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the pty."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self.link.unplug()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # Fault injection ---------------------------------------------------------------
    def no_reply(self, ids: Iterable[int] = (), deaf: bool = False) -> None:
        """The servos ``ids`` stop answering (() restores all) but still obey writes, unless
        ``deaf``: then they ignore instructions too (behind a cut daisy-chain cable)."""
        with self._lock:
            self._silent = set(ids)
            self._deaf = set(self._silent) if deaf else set()

    def corrupt_crc(self, n: int = 1) -> None:
        """Flip a CRC bit in the next ``n`` status packets."""
        with self._lock:
            self._corrupt = n

    def truncate_replies(self, n: int = 1) -> None:
        """Send only the first half of the next ``n`` status packets (partial packets)."""
        with self._lock:
            self._truncate = n

    def set_hardware_error(self, dxl_id: int, bits: int) -> None:
        """Set Hardware Error Status bits (``dxl.HardwareError``); torque off per Shutdown."""
        with self._lock:
            servo = self.servos[dxl_id]
            servo.set('hardware_error_status', bits)
            if bits & servo.get('shutdown'):
                servo.set('torque_enable', 0)

    def unplug(self) -> None:
        """Pull the U2D2's cable: the port disappears; the servos keep their state."""
        self.link.unplug()

    def replug(self) -> None:
        """Plug it back in (a fresh pty at the same path)."""
        with self._lock:
            self._parser = dxl.StreamParser()
        self.link.replug()

    # Serving -----------------------------------------------------------------------
    def _run(self) -> None:
        next_tick = time.monotonic() + self.physics_period_s
        last_byte = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_tick:
                steps = 0
                while now >= next_tick and steps < 10:
                    self._step_physics()
                    next_tick += self.physics_period_s
                    steps += 1
                if now >= next_tick:           # far behind (machine busy): resynchronise
                    self.stats['physics_overruns'] += 1
                    next_tick = now + self.physics_period_s
            if not self.link.plugged:
                time.sleep(min(0.005, self.physics_period_s))
                continue
            data = self.link.read(timeout=max(0.0, min(0.005, next_tick - time.monotonic())))
            if data:
                last_byte = time.monotonic()
                self._handle_bytes(data)
            elif self._parser.pending and time.monotonic() - last_byte > 0.01:
                with self._lock:              # inter-byte timeout: drop the partial frame
                    self._parser.flush()

    def _step_physics(self) -> None:
        with self._lock:
            inputs = {i: MotorInput(bool(s.get('torque_enable')), s.get('goal_position'),
                                    s.get('present_position'),
                                    bool(s.get('drive_mode') & dxl.DRIVE_MODE_REVERSE),
                                    s.get('profile_velocity'), s.get('velocity_limit'))
                      for i, s in self.servos.items()}
            try:
                outputs = self.physics(inputs, self.physics_period_s)
            except Exception:  # noqa: BLE001 - a physics bug must not kill the bus
                log.exception('emulator physics failed; servos frozen this step')
                return
            for dxl_id, out in outputs.items():
                servo = self.servos[dxl_id]
                servo.set('present_position', out.position)
                servo.set('present_velocity', out.velocity)
                servo.set('present_current', out.current)
                servo.set('moving', int(out.velocity != 0))

    def _handle_bytes(self, data: bytes) -> None:
        replies: list[bytes] = []
        request_bytes = len(data)
        delay = 0.0
        with self._lock:
            now = time.monotonic()
            for item in self._parser.feed(data):
                if isinstance(item, dxl.PacketError):
                    self.stats['bad_frames'] += 1
                    servo = self.servos.get(item.dxl_id) if isinstance(
                        item, dxl.CrcError) else None
                    if servo is not None and self._can_reply(servo, now):
                        replies.append(self._status(servo, 3))
                    continue
                self.stats['packets'] += 1
                self.stats[_INSTRUCTION_NAMES.get(item.instruction, 'other')] += 1
                for servo, reply in self._handle(item, now):
                    delay += servo.get('return_delay_time') * 2e-6
                    replies.append(reply)
            replies = [self._faulted(r) for r in replies]
        if not replies:
            return
        out = b''.join(replies)
        if self.baudrate:
            delay += (request_bytes + len(out)) * 10 / self.baudrate
        if delay > 0:
            time.sleep(delay)
        self.link.write(out)

    def _faulted(self, reply: bytes) -> bytes:
        if self._corrupt > 0:
            self._corrupt -= 1
            reply = reply[:-2] + bytes([reply[-2] ^ 0x01, reply[-1]])
        if self._truncate > 0:
            self._truncate -= 1
            reply = reply[:len(reply) // 2]
        return reply

    def _can_reply(self, servo: EmulatedServo, now: float) -> bool:
        return servo.id not in self._silent and now >= servo.busy_until

    def _status(self, servo: EmulatedServo, error: int = 0, data: bytes = b'') -> bytes:
        alert = dxl.STATUS_ALERT if servo.get('hardware_error_status') else 0
        return dxl.encode_status(servo.id, error | alert, data)

    def _targets(self, dxl_id: int) -> list[tuple[EmulatedServo, bool]]:
        """Servos addressed by ``dxl_id`` (all for broadcast): (servo, via Secondary ID?)."""
        if dxl_id == dxl.BROADCAST_ID:
            return [(s, False) for s in self.servos.values()]
        return [(s, s.id != dxl_id) for s in self.servos.values()
                if s.id == dxl_id or s.get('secondary_id') == dxl_id]

    def _handle(self, pkt: Packet, now: float) -> list[tuple[EmulatedServo, bytes]]:
        inst, out = pkt.instruction, []
        try:
            if inst == Instruction.SYNC_READ:
                address, length, ids = dxl.decode_sync_read(pkt.params)
                self.sync_read_ids.append(list(ids))
                for dxl_id in ids:
                    servo = self.servos.get(dxl_id)
                    if servo is not None and self._can_reply(servo, now) and \
                            servo.get('status_return_level') >= 1:
                        out.append((servo, self._read(servo, address, length)))
                return out
            if inst == Instruction.SYNC_WRITE:
                address, _, chunks = dxl.decode_sync_write(pkt.params)
                for dxl_id, data in chunks.items():
                    for servo, via_secondary in self._targets(dxl_id):
                        if now >= servo.busy_until and not (via_secondary and address < 64) \
                                and servo.id not in self._deaf:
                            self._write(servo, address, data)
                return out
            if inst == Instruction.PING and pkt.id == dxl.BROADCAST_ID:
                return [(s, self._ping(s)) for s in sorted(self.servos.values(),
                                                           key=lambda s: s.id)
                        if self._can_reply(s, now)]
        except dxl.PacketError:
            self.stats['bad_params'] += 1
            return out
        for servo, via_secondary in self._targets(pkt.id):
            if now < servo.busy_until or servo.id in self._deaf:
                continue
            reply = self._instruction(servo, pkt, now, via_secondary)
            level = servo.get('status_return_level')
            wanted = inst == Instruction.PING or level == 2 or (
                level == 1 and inst == Instruction.READ)
            if servo.id == pkt.id and reply is not None and wanted and \
                    servo.id not in self._silent:
                out.append((servo, reply))
        return out

    def _instruction(self, servo: EmulatedServo, pkt: Packet, now: float,
                     via_secondary: bool) -> bytes | None:
        inst = pkt.instruction
        try:
            if inst == Instruction.PING:
                return self._ping(servo)
            if inst == Instruction.READ:
                return self._read(servo, *dxl.decode_read(pkt.params))
            if inst == Instruction.WRITE:
                address, data = dxl.decode_write(pkt.params)
                if address < 64 and via_secondary:
                    return None                  # no EEPROM writes through a Secondary ID
                return self._status(servo, self._write(servo, address, data))
            if inst == Instruction.REBOOT:
                reply = self._status(servo)      # answered first, then it restarts
                servo.reboot(now, self.reboot_s)
                return reply
        except dxl.PacketError:
            return self._status(servo, 5)        # data length error
        return self._status(servo, 2)            # instruction error

    def _ping(self, servo: EmulatedServo) -> bytes:
        return self._status(servo, 0, dxl.to_bytes(servo.get('model_number'), 2)
                            + bytes([servo.get('firmware_version')]))

    def _read(self, servo: EmulatedServo, address: int, length: int) -> bytes:
        if length == 0 or address + length > len(servo.mem):
            return self._status(servo, 5)
        return self._status(servo, 0, bytes(servo.mem[address:address + length]))

    def _write(self, servo: EmulatedServo, address: int, data: bytes) -> int:
        error = servo.write(address, data)
        self.write_log.append((servo.id, address, bytes(data), error))
        return error
