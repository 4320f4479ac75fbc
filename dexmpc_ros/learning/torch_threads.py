"""
Torch's intra-op thread count for the duration of a block (``threads`` of the model configs).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch threads (0: unchanged), then restore."""
    old = torch.get_num_threads()
    if threads <= 0 or threads == old:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)
