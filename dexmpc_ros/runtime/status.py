"""
Render the live status line from the status node's JSON (pure formatting).

Example::

    t=12s | twin 10.0Hz ep 2 step 37 r -0.41 R -18.2 | safety ARMED 10.0Hz pass 120
    clamp 4 block 0 hold 3 rules step:4 p99 85us | controller 10.0Hz | recorder 95 msg/s

The safety entry names its most frequent rules (count since start) and the p99 time its
filter takes per command.
"""

from __future__ import annotations

from typing import Any

#: How many of the most frequent safety rules the status line names.
TOP_RULES = 3


def _f(entry: dict[str, Any], key: str, default: float = 0.0) -> float:
    try:
        return float(entry.get(key, default))
    except (TypeError, ValueError):
        return default


def node_summary(name: str, entry: dict[str, Any]) -> str:
    """One node's compact summary; unknown node kinds show their rate and level."""
    rate = _f(entry, 'rate_hz')
    parts = [f'{name} {rate:.1f}Hz']
    if 'episode' in entry:
        parts.append(f'ep {int(_f(entry, "episode"))} step {int(_f(entry, "episode_step"))} '
                     f'r {_f(entry, "reward"):.3g} R {_f(entry, "episode_return"):.3g}')
    if 'passed' in entry:
        parts = [f'{name} {entry.get("state", "?")} {rate:.1f}Hz',
                 f'pass {int(_f(entry, "passed"))} clamp {int(_f(entry, "clamped"))} '
                 f'block {int(_f(entry, "blocked"))} hold {int(_f(entry, "held"))}']
        rules = sorted(((int(_f(entry, key)), key[5:]) for key in entry
                        if key.startswith('rule/') and _f(entry, key) > 0), reverse=True)
        if rules:
            parts.append('rules ' + ' '.join(f'{rule}:{count}'
                                             for count, rule in rules[:TOP_RULES]))
        if 'latency_us_p99' in entry:
            parts.append(f'p99 {_f(entry, "latency_us_p99"):.0f}us')
    if 'messages' in entry:
        parts = [f'{name} {rate:.0f} msg/s {int(_f(entry, "messages"))} msgs']
        if _f(entry, 'dropped'):
            parts.append(f'DROPPED {int(_f(entry, "dropped"))}')
    if entry.get('level') in ('warn', 'error'):
        parts.append(f'[{entry["level"].upper()}: {entry.get("message", "")}]')
    return ' '.join(parts)


def format_status(elapsed_s: float, status: dict[str, Any], node_names: list[str]) -> str:
    """Status line: elapsed time, then each experiment node in spec order."""
    nodes = status.get('nodes', {})
    parts = [f't={elapsed_s:.0f}s']
    for name in node_names:
        entry = nodes.get(name)
        parts.append(node_summary(name, entry) if entry else f'{name} (no diagnostics yet)')
    return ' | '.join(parts)
