"""
The WidowX's Dynamixel bus, emulated: its nine wx250s servos on a
:class:`~dexmpc_ros.wire.dynamixel_bus.DynamixelBusEmulator`, with first-order physics or
the MuJoCo twin (hardware in the loop). :func:`hil_emulator` is the bus behind a
``robots/hil_world.py`` world (backend ``hil``). Also a command line::

    python -m dexmpc_ros.robots.widowx.emulator --port /tmp/ttyDXL --twin
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import threading
from typing import Any

from dexmpc_ros.robots.widowx.physics import WidowXTwinPhysics, widowx_servos
from dexmpc_ros.wire.dynamixel_bus import DynamixelBusEmulator
from dexmpc_ros.wire.pty_link import PtyLink


def widowx_bus_emulator(link: PtyLink | None = None, twin: bool = False,
                        seed: int = 0) -> DynamixelBusEmulator:
    """
    The nine wx250s servos (IDs, models, shadows' Secondary IDs, position limits from
    ``config/robots/widowx.yaml``) at the spec's default pose, not yet started.

    Args:
        link: pty to serve (default: a new one).
        twin: True: the WidowX MuJoCo twin is the physics, stepped every control period
            (hardware-in-the-loop); False: :class:`FirstOrderPhysics` every 2 ms.
        seed: the twin's seed.
    """
    if twin:
        physics = WidowXTwinPhysics(seed=seed)
        return DynamixelBusEmulator(widowx_servos(physics.initial_ticks()), link, physics,
                                    physics_period_s=physics.period_s)
    return DynamixelBusEmulator(widowx_servos(), link)


class HilBusPhysics:
    """
    :class:`WidowXTwinPhysics` on a HIL world's twin, under its lock, applying its resets.

    A reset holds the reset pose for one physics period; then every torque-on servo's goal
    becomes its new present position, so the arm holds the reset pose until the driver's
    next goal (as the twin node's reset does).
    """

    def __init__(self, world: Any) -> None:
        self.world = world
        self.physics = WidowXTwinPhysics(twin=world.twin)
        self.bus: DynamixelBusEmulator | None = None     # set once the bus exists

    def __call__(self, inputs: dict, dt: float) -> dict:
        with self.world.lock:
            pending, seed = self.world.take_reset()
            if not pending:
                return self.physics(inputs, dt)
            self.world.apply_reset(seed)
            held = {i: dataclasses.replace(m, torque_on=False) for i, m in inputs.items()}
            outputs = self.physics(held, dt)
            if self.bus is not None:
                for dxl_id, out in outputs.items():
                    if inputs[dxl_id].torque_on:
                        self.bus.servos[dxl_id].set('goal_position', out.position)
            return outputs


def hil_emulator(world: Any) -> DynamixelBusEmulator:
    """The arm's bus at ``world.port`` (the spec's baud rate), the world's twin its physics."""
    physics = HilBusPhysics(world)
    baud = int(world.spec.driver.get('baud', 1_000_000))
    bus = DynamixelBusEmulator(widowx_servos(physics.physics.initial_ticks(), world.spec),
                               PtyLink(world.port), physics,
                               physics_period_s=physics.physics.period_s, baudrate=baud)
    physics.bus = bus
    return bus


def main(argv: list[str] | None = None) -> int:
    """CLI: serve the emulated arm's bus at ``--port`` until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--port', required=True, help='path of the emulated port (symlink)')
    parser.add_argument('--twin', action='store_true',
                        help='use the MuJoCo twin as the physics (default: first-order)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    emulator = widowx_bus_emulator(PtyLink(args.port), twin=args.twin, seed=args.seed)
    with emulator:
        print(f'emulated widowx Dynamixel bus on {emulator.path} '
              f'({len(emulator.servos)} servos); Ctrl-C to stop', flush=True)
        done.wait()
    print(f'stopped: {dict(emulator.stats)}', flush=True)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
