"""
The plots of the run report (``returns.png``, ``validation.png``, ``planning.png``), drawn
with matplotlib into the report folder. The report is built by runtime/report.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dexmpc_ros.core.errors import ConfigError
from dexmpc_ros.runtime.report_content import file_name
from dexmpc_ros.runtime.run_bag import number, planning_windows
from dexmpc_ros.runtime.episode_record import EpisodeRecord
from dexmpc_ros.runtime.run_records import Report

PLOTS = ('returns.png', 'validation.png', 'planning.png')
_MODE_COLORS = {'explore': 'C0', 'plan': 'C1', 'wait': 'C7', 'no mpc': 'C2'}


def plot_all(report: Report, folder: Path) -> dict[str, str]:
    """Write the plots that have data; returns file name -> caption."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    plots = {}
    makers = (('returns.png', _plot_returns), ('validation.png', _plot_validation),
              ('planning.png', _plot_planning))
    for name, maker in makers:
        caption = maker(report, plt, folder / name)
        if caption:
            plots[name] = caption
    return plots


def _swap_steps(report: Report) -> list[tuple[int, str]]:
    """(env steps at the swap, checkpoint name) for swaps inside the recording."""
    if report.bag_start_ns is None or not report.reward_ns.size:
        return []
    return [(int(np.searchsorted(report.reward_ns, s.t_ns, side='right')), file_name(s.checkpoint))
            for s in report.swaps if s.t_ns >= report.reward_ns[0]]


def _plot_returns(report: Report, plt: Any, path: Path) -> str:
    records = report.episodes
    if not records:
        return ''
    with_success = report.rule is not None
    by_steps = report.reward_ns.size > 0   # without rewards, episodes are the axis

    def x(chosen: Sequence[EpisodeRecord]) -> list[int]:
        return [r.env_steps if by_steps else r.episode for r in chosen]

    fig, axes = plt.subplots(2 if with_success else 1, 1, sharex=True, squeeze=False,
                             figsize=(9, 6 if with_success else 3.8))
    top = axes[0][0]
    for mode, color in _MODE_COLORS.items():
        chosen = [r for g in report.groups if g.mode == mode for r in g.episodes]
        if chosen:
            top.scatter(x(chosen), [r.episode_return for r in chosen],
                        s=16, c=color, label=mode,
                        edgecolors=['k' if r.partial else color for r in chosen])
    for g in report.groups:
        if g.counted:
            top.hlines(g.mean_return, x(g.counted)[0], x(g.counted)[-1], colors='k',
                       lw=1.5)
    top.set_ylabel('episode return')
    top.legend(loc='best', fontsize=8)
    if with_success:
        bottom = axes[1][0]
        for g in report.groups:
            bottom.scatter(x(g.counted), [float(bool(r.success)) for r in g.counted], s=10,
                           c=_MODE_COLORS[g.mode], alpha=0.6)
        for g in report.groups:
            if g.success_rate is not None:
                bottom.hlines(g.success_rate, x(g.counted)[0], x(g.counted)[-1],
                              colors='k', lw=2)
        bottom.set_ylim(-0.05, 1.05)
        bottom.set_ylabel(f'success (|{report.rule.entry}| < {report.rule.threshold:g})')
    for ax in (row[0] for row in axes):
        for steps, name in _swap_steps(report):
            ax.axvline(steps, color='gray', ls=':', lw=1)
    for steps, name in _swap_steps(report):
        top.annotate(name, (steps, 1.0), xycoords=('data', 'axes fraction'), rotation=90,
                     fontsize=6, va='top', ha='right', color='gray')
    axes[-1][0].set_xlabel('env steps (recorded)' if by_steps else 'episode')
    top.set_title(f'{report.spec["name"]}: per episode (black: group mean; dotted: swaps)')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return 'Return and success per episode against env steps; dotted lines: checkpoint swaps.'


def _plot_validation(report: Report, plt: Any, path: Path) -> str:
    entries = report.checkpoints
    if not entries:
        return ''
    x = np.arange(1, len(entries) + 1)
    score = np.array([float(e.metrics.get('score', math.nan)) for e in entries])
    current = np.array([float(e.metrics.get('current_score', math.nan)) for e in entries])
    fig, ax = plt.subplots(figsize=(9, 3.8))
    kinds = (('accepted', lambda e: e.accepted and not e.rolled_back, 'C2', 'o'),
             ('refused', lambda e: not e.accepted, 'C3', 'x'),
             ('rolled back', lambda e: e.rolled_back, 'C7', 's'))
    for label, test, color, marker in kinds:
        chosen = np.array([test(e) for e in entries])
        if chosen.any():
            ax.scatter(x[chosen], score[chosen], c=color, marker=marker, label=label, zorder=3)
    if np.any(~np.isnan(current)):
        ax.scatter(x, current, facecolors='none', edgecolors='k', marker='o', s=40,
                   label='model in use, same data', zorder=2)
    finite = score[np.isfinite(score)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 20:
        ax.set_yscale('log')
    ax.set_xticks(x)
    ax.set_xticklabels([file_name(e.path) for e in entries], rotation=60, fontsize=7)
    ax.set_ylabel('held-out error (state stds)')
    ax.set_title('validation score per checkpoint (lower is better)')
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return 'Validation score of every checkpoint the learner proposed.'


def _plot_planning(report: Report, plt: Any, path: Path) -> str:
    if not report.mpc:
        return ''
    t0 = report.bag_start_ns or report.mpc[0][0]
    t = np.array([(ts - t0) * 1e-9 for ts, _ in report.mpc])
    p50, p99 = planning_windows(report.mpc)
    missed = np.array([number(v, 'missed_ticks') for _, v in report.mpc])
    fig, ax = plt.subplots(figsize=(9, 3.8))
    ax.plot(t, p50, label='p50 (last 200 ticks)')
    ax.plot(t, p99, label='p99 (last 200 ticks)')
    period = _period_ms(report.spec)
    if period is not None:
        ax.axhline(period, color='C3', ls='--', lw=1, label='control period')
    ax.set_xlabel('run time [s] (bag)')
    ax.set_ylabel('planning time per tick [ms]')
    twin = ax.twinx()
    twin.step(t, missed, where='post', color='C7', lw=1, label='missed ticks (total)')
    twin.set_ylabel('missed ticks')
    twin.set_ylim(0, max(1.0, float(np.nanmax(missed, initial=0.0))) * 1.1)
    for s in report.swaps:
        if s.t_ns >= t0:
            ax.axvline((s.t_ns - t0) * 1e-9, color='gray', ls=':', lw=1)
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc='upper left')
    ax.set_title('mpc planning time (dotted: checkpoint swaps)')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return 'Planning time per tick (p50/p99 of the last 200 ticks, once a second).'


def _period_ms(spec: dict[str, Any]) -> float | None:
    from dexmpc_ros.core.robot_spec import load_robot_spec
    try:
        return load_robot_spec(spec['robot']).period_s * 1e3
    except (ConfigError, OSError):
        return None
