"""
The WidowX's Dynamixel bus, emulated: its nine wx250s servos on a
:class:`~dexmpc_ros.wire.dynamixel_bus.DynamixelBusEmulator`, with first-order physics or
the MuJoCo twin (hardware in the loop). Also a command line::

    python -m dexmpc_ros.robots.widowx.emulator --port /tmp/ttyDXL --twin
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

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
