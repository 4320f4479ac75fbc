"""
The content of the run report as blocks (headings, paragraphs, lists, tables, images),
and their rendering as Markdown and HTML. The report is built by runtime/report.py.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
import numpy as np

from dexmpc_ros.core.rate import MISSED_TICK_PERIODS
from dexmpc_ros.runtime.run_bag import number, planning_windows
from dexmpc_ros.runtime.episode_record import EpisodeRecord
from dexmpc_ros.runtime.run_records import Report


# Content -----------------------------------------------------------------------------------
Block = tuple  # ('h', level, text) | ('p', text) | ('ul', [items]) | ('table', head, rows)
#              | ('img', file, alt)


def _fmt(value: float | None, spec: str = '.1f') -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return format(value, spec)


def _pct(value: float | None) -> str:
    return '-' if value is None else f'{value:.0%}'


def file_name(path: str | None) -> str:
    return Path(path).name if path else '-'


def _clock(unix_s: float | None) -> str:
    return '-' if unix_s is None else datetime.fromtimestamp(unix_s).strftime(
        '%Y-%m-%d %H:%M:%S')


def _mean_success(records: Sequence[EpisodeRecord]) -> float | None:
    verdicts = [r.success for r in records if not r.partial and r.success is not None]
    return float(np.mean(verdicts)) if verdicts else None


def _counter_at(series: Sequence[tuple[int, dict[str, str]]], key: str,
                times_ns: Sequence[int]) -> np.ndarray:
    """A cumulative diagnostics counter at each bag time (0 before its first value)."""
    stamps = np.array([t for t, v in series if not math.isnan(number(v, key))], np.int64)
    values = np.array([number(v, key) for _, v in series if not math.isnan(number(v, key))])
    index = np.searchsorted(stamps, np.asarray(times_ns, dtype=np.int64), side='right') - 1
    return np.where(index >= 0, values[np.maximum(index, 0)] if values.size else 0.0, 0.0)


def _nanmedian(values: np.ndarray) -> float:
    return float(np.nanmedian(values)) if np.any(~np.isnan(values)) else math.nan


def _nanmax(values: np.ndarray) -> float:
    return float(np.nanmax(values)) if np.any(~np.isnan(values)) else math.nan


def _summary(report: Report) -> list[Block]:
    spec, outcome = report.spec, report.outcome
    described = f' - {spec["description"]}' if spec.get('description') else ''
    items = [f'experiment: {spec["name"]}{described}',
             f'robot: {spec["robot"]} ({spec.get("backend", "sim")}), task: '
             f'{report.task or "-"}, use_sim_time: {bool(spec.get("use_sim_time", False))}']
    if report.bag_start_ns is not None:
        items.append(f'recorded: {_fmt(report.bag_duration_s)} s of simulated time'
                     if spec.get('use_sim_time') else
                     f'recorded: {_fmt(report.bag_duration_s)} s from '
                     f'{_clock(report.bag_start_ns * 1e-9)}')
    if outcome is not None:
        how = ('interrupted (Ctrl-C/SIGTERM)' if outcome.interrupted
               else f'node {outcome.failed_node} failed' if outcome.failed_node
               else 'ran to its duration')
        items.append(f'run: {how}; requested {_fmt(outcome.duration_s, "g")} s, elapsed '
                     f'{_fmt(outcome.elapsed_s)} s; exit code {outcome.exit_code}')
        items.append(f'git commit: {outcome.git_commit or "unknown (not a git checkout)"}')
    else:
        items.append('run outcome and git commit: not recorded (no report/outcome.json; '
                     '`dexmpc up` writes it)')
    counted = [r for r in report.episodes if not r.partial]
    explored = [r for r in counted if not r.planned]
    planned = [r for r in counted if r.planned]
    if report.episodes:
        line = (f'episodes: {len(counted)} counted ({len(explored)} before the first model, '
                f'{len(planned)} planned), {report.episodes[-1].env_steps} env steps')
        if report.rule is not None:
            line += (f'; success (|{report.rule.entry}| < {report.rule.threshold:g}): '
                     f'before the first model {_pct(_mean_success(explored))}, planned '
                     f'{_pct(_mean_success(planned))}, last 20 planned '
                     f'{_pct(_mean_success(planned[-20:]))}')
            evaluation = [r for r in planned if r.evaluation]
            if evaluation:
                line += (f'; evaluation episodes (no action noise): {len(evaluation)}, '
                         f'{_pct(_mean_success(evaluation))}, last 20 '
                         f'{_pct(_mean_success(evaluation[-20:]))}')
        items.append(line)
    if report.checkpoints:
        accepted = sum(e.accepted for e in report.checkpoints)
        items.append(f'checkpoints: {len(report.checkpoints)} proposed, {accepted} accepted, '
                     f'{len(report.checkpoints) - accepted} refused, '
                     f'{sum(e.rolled_back for e in report.checkpoints)} rolled back; '
                     f'{len(report.swaps)} swaps by the mpc node')
    blocks: list[Block] = [('h', 1, f'Run report: {spec["name"]}'), ('p', str(report.run_dir)),
                           ('ul', items)]
    for note in report.notes:
        blocks.append(('p', f'Note: {note}'))
    return blocks


def _nodes(report: Report) -> list[Block]:
    rows = []
    for v in report.nodes:
        if v.exit_code is None:
            exit_text = 'not recorded'
        else:
            exit_text = f'{v.exit_code}' + (' (SIGINT)' if v.exit_code == -2 else '')
        verdict = {True: 'clean', False: 'NOT CLEAN', None: 'no crash logged'}[v.clean]
        log = (f'crash: {v.crash}' if v.crash else 'no log' if not v.has_log
               else f'{v.errors} errors, last: {v.last_error}' if v.errors else 'no errors')
        rows.append([v.name, v.kind, exit_text, verdict, log])
    blocks: list[Block] = [('h', 2, 'Nodes'),
                           ('table', ['node', 'kind', 'exit code', 'ended', 'log'], rows)]
    if report.outcome is not None and report.outcome.reason:
        blocks.append(('p', f'Runner: {report.outcome.reason}'))
    return blocks


def _groups(report: Report, plots: dict[str, str]) -> list[Block]:
    blocks: list[Block] = [('h', 2, 'Episodes per learner iteration')]
    if not report.groups:
        return blocks + [('p', 'No finished episode in the bag.')]
    blocks.append(('p', 'One row per checkpoint in force: the episodes that started while '
                        'the mpc node planned with it (before the first model: exploring '
                        'or waiting). Partial episodes are not counted. Safety counts are '
                        'the supervisor\'s clamped/blocked/held commands during the group '
                        '(from its 1 Hz diagnostics).'))
    head = ['#', 'checkpoint', 'mode', 'episodes', 'count', 'mean return', 'success',
            'env steps so far', 'safety clamp/block/hold']
    rows = []
    bounds = [t for g in report.groups for t in (g.episodes[0].start_ns, g.episodes[-1].end_ns)]
    counts = {key: _counter_at(report.safety, key, bounds).reshape(-1, 2)
              for key in ('clamped', 'blocked', 'held')}
    for g in report.groups:
        safety = '-' if not report.safety else '/'.join(
            f'{np.diff(counts[key][g.index])[0]:g}' for key in counts)
        rows.append([str(g.index), file_name(g.checkpoint), g.mode,
                     f'{g.episodes[0].episode}-{g.episodes[-1].episode}', str(len(g.counted)),
                     _fmt(g.mean_return), _pct(g.success_rate), str(g.env_steps), safety])
    blocks.append(('table', head, rows))
    if 'returns.png' in plots:
        blocks.append(('img', 'returns.png', plots['returns.png']))
    blocks.append(('h', 2, 'Episodes'))
    head = ['episode', 'group', 'mode', 'steps', 'return', 'env steps']
    if report.rule is not None:
        head += [f'final |{report.rule.entry}|', 'success']
    rows = []
    for g, r in ((g, r) for g in report.groups for r in g.episodes):
        row = [str(r.episode) + (' (partial)' if r.partial else ''), str(g.index), g.mode,
               str(r.steps), _fmt(r.episode_return), str(r.env_steps)]
        if report.rule is not None:
            row += [_fmt(r.final_error, '.3f'), 'yes' if r.success else 'no']
        rows.append(row)
    blocks.append(('table', head, rows))
    return blocks


def _checkpoints(report: Report, plots: dict[str, str]) -> list[Block]:
    blocks: list[Block] = [('h', 2, 'Model error per checkpoint')]
    if not report.checkpoints:
        return blocks + [('p', 'No models/history.json: the run trained no model.')]
    blocks.append(('p', 'score: the new model\'s mean H-step open-loop prediction error on '
                        'the held-out newest episodes, in state standard deviations (lower '
                        'is better); current: the model in use on the same episodes. A '
                        'checkpoint is accepted only if it beats the current one.'))
    planned = {}
    for r in report.episodes:
        if r.checkpoint is not None and not r.partial:
            planned[r.checkpoint] = planned.get(r.checkpoint, 0) + 1
    swapped = {}
    for s in report.swaps:
        swapped[s.checkpoint] = swapped.get(s.checkpoint, 0) + 1
    rows = []
    for e in report.checkpoints:
        m = e.metrics
        state = 'rolled back' if e.rolled_back else 'accepted' if e.accepted else 'refused'
        rows.append([file_name(e.path), _clock(e.created), _fmt(m.get('score'), '.4g'),
                     _fmt(m.get('current_score'), '.4g'), str(m.get('horizon', '-')), state,
                     str(swapped.get(e.path, 0)), str(planned.get(e.path, 0)), e.reason])
    blocks.append(('table', ['checkpoint', 'created', 'score', 'current', 'H', 'decision',
                             'swapped in', 'episodes planned', 'reason'], rows))
    if report.learner:
        last = report.learner[-1][1]
        blocks.append(('p', f'Learner at the end: {last.get("iterations", "?")} trainings, '
                            f'last took {_fmt(number(last, "last_train_s"))} s'
                            + (f', last error: {last["last_error"]}'
                               if last.get('last_error') else '')))
    if 'validation.png' in plots:
        blocks.append(('img', 'validation.png', plots['validation.png']))
    return blocks


def _planner(report: Report, plots: dict[str, str]) -> list[Block]:
    blocks: list[Block] = [('h', 2, 'Planner timing')]
    if not report.mpc:
        return blocks + [('p', 'No mpc node diagnostics in the bag.')]
    p50, p99 = planning_windows(report.mpc)
    last = report.mpc[-1][1]
    missed = number(last, 'missed_ticks')
    ticks = number(last, 'commands')
    items = [f'planning windows (200 ticks, 1 Hz): {int(np.sum(~np.isnan(p50)))}',
             f'p50 planning time: median {_fmt(_nanmedian(p50), ".2f")} ms, worst window '
             f'{_fmt(_nanmax(p50), ".2f")} ms',
             f'p99 planning time: median {_fmt(_nanmedian(p99), ".2f")} ms, worst window '
             f'{_fmt(_nanmax(p99), ".2f")} ms',
             f'missed ticks (> {MISSED_TICK_PERIODS:g} periods apart): {_fmt(missed, "g")} of '
             f'{_fmt(ticks, "g")} commands; during checkpoint swaps: '
             f'{last.get("missed_in_swaps", "?")}',
             f'checkpoints swapped in: {last.get("swaps", "?")}, refused: '
             f'{last.get("refused", "?")}']
    if last.get('last_error'):
        items.append(f'last error: {last["last_error"]}')
    blocks.append(('ul', items))
    if 'planning.png' in plots:
        blocks.append(('img', 'planning.png', plots['planning.png']))
    return blocks


def _safety(report: Report) -> list[Block]:
    blocks: list[Block] = [('h', 2, 'Safety supervisor')]
    if not report.safety:
        return blocks + [('p', 'No safety node diagnostics in the bag.')]
    last = report.safety[-1][1]
    rows = [[key, last[key]] for key in ('state', 'passed', 'clamped', 'blocked', 'held',
                                         'estops') if key in last]
    rows += [[key, value] for key, value in last.items()
             if key.startswith('rule/') and number(last, key) > 0]
    if 'latency_us_p99' in last:
        rows.append(['filter p99 [us]', last['latency_us_p99']])
    blocks.append(('p', 'Counts since the start, from the last diagnostics message; '
                        'rule/<name>: commands each rule changed or stopped.'))
    blocks.append(('table', ['counter', 'value'], rows))
    if last.get('last_reason'):
        blocks.append(('p', f'Last reason: {last["last_reason"]}'))
    return blocks


def report_blocks(report: Report, plots: dict[str, str]) -> list[Block]:
    return [*_summary(report), *_nodes(report), *_groups(report, plots),
            *_checkpoints(report, plots), *_planner(report, plots), *_safety(report)]


# Rendering ---------------------------------------------------------------------------------
def _md_cell(text: str) -> str:
    return str(text).replace('|', '\\|').replace('\n', ' ')


def render_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as Markdown (images by relative path)."""
    out: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == 'h':
            out.append(f'{"#" * block[1]} {block[2]}')
        elif kind == 'p':
            out.append(block[1])
        elif kind == 'ul':
            out.append('\n'.join(f'- {item}' for item in block[1]))
        elif kind == 'table':
            head, rows = block[1], block[2]
            lines = ['| ' + ' | '.join(_md_cell(h) for h in head) + ' |',
                     '|' + '---|' * len(head)]
            lines += ['| ' + ' | '.join(_md_cell(c) for c in row) + ' |' for row in rows]
            out.append('\n'.join(lines))
        elif kind == 'img':
            out.append(f'![{block[2]}]({block[1]})')
    return '\n\n'.join(out) + '\n'


_STYLE = ('body{font-family:sans-serif;max-width:70em;margin:1em auto;padding:0 1em}'
          'table{border-collapse:collapse;margin:.5em 0}'
          'td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%;text-align:left}'
          'th{background:#eee}img{max-width:100%}')


def render_html(blocks: Sequence[Block], title: str) -> str:
    """The blocks as one HTML page: inline style, images by relative path."""
    esc = html.escape
    out = ['<!DOCTYPE html>', '<html><head><meta charset="utf-8">',
           f'<title>{esc(title)}</title><style>{_STYLE}</style></head><body>']
    for block in blocks:
        kind = block[0]
        if kind == 'h':
            out.append(f'<h{block[1]}>{esc(block[2])}</h{block[1]}>')
        elif kind == 'p':
            out.append(f'<p>{esc(block[1])}</p>')
        elif kind == 'ul':
            out.append('<ul>' + ''.join(f'<li>{esc(i)}</li>' for i in block[1]) + '</ul>')
        elif kind == 'table':
            rows = [''.join(f'<th>{esc(h)}</th>' for h in block[1])]
            rows += [''.join(f'<td>{esc(str(c))}</td>' for c in row) for row in block[2]]
            out.append('<table>' + ''.join(f'<tr>{r}</tr>' for r in rows) + '</table>')
        elif kind == 'img':
            out.append(f'<figure><img src="{esc(block[1])}" alt="{esc(block[2])}">'
                       f'<figcaption>{esc(block[2])}</figcaption></figure>')
    out.append('</body></html>')
    return '\n'.join(out) + '\n'
