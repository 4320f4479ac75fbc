"""
The one ``main()`` every node uses: init, spin, clean shutdown.

On Jazzy ``with rclpy.init()`` is unreliable, so this is the try/finally form
(CONVENTIONS.md §15). SIGINT and SIGTERM both end the spin cleanly, so a node's
``destroy_node`` (which flushes recorders, stops twins) always runs.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from dexmpc_ros.core.errors import ConfigError


#: How long a RuntimeError out of spin waits to learn whether a SIGINT shutdown caused it.
SHUTDOWN_GRACE_S = 2.0


def _shut_down_within(seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while rclpy.ok():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def run_node(factory: Callable[[], Node], args: list[str] | None = None,
             threads: int = 1) -> int:
    """
    Build the node with ``factory`` and spin it until shutdown.

    Args:
        factory: builds the node (after ``rclpy.init``).
        args: command-line arguments (``--ros-args ...``); default ``sys.argv``.
        threads: >1 spins a MultiThreadedExecutor (callbacks in separate groups run
            in parallel).

    Returns:
        Process exit code: 0 on a clean stop, 2 on a configuration error.
    """
    rclpy.init(args=args if args is not None else sys.argv)
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    node = None
    try:
        node = factory()
        if threads > 1:
            executor = MultiThreadedExecutor(num_threads=threads)
            executor.add_node(node)
            executor.spin()
        else:
            rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # A message taken while SIGINT shuts the context down can fail to convert (seen
        # on the safety node under a 1 kHz command flood): that is the stop, not a fault.
        # rclpy shuts the context down on its own signal thread, so give it a moment.
        if not _shut_down_within(SHUTDOWN_GRACE_S):
            raise
    except ConfigError as exc:
        sys.stderr.write(f'configuration error: {exc}\n')
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
