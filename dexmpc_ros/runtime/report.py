"""
The report of a run: what it did, read back from its run folder.

``dexmpc report <run>`` writes it; ``dexmpc up`` writes it by itself at the end of a run
that has an ``mpc`` or ``learner`` node. Inputs, all in the run folder (runtime/runner.py)::

    spec.yaml              experiment, robot, nodes and their parameters
    logs/<node>.log        errors and crashes; the mpc node's "now planning with" lines
    bag/                   /episode, /task_state, /reward, /diagnostics (any namespace)
    models/history.json    the learner's checkpoint store (learning/store.py)
    report/outcome.json    written by ``dexmpc up``: exit codes, git commit, durations

Output, in ``<run>/report/``: ``report.md`` and ``report.html`` with the same content (the
HTML needs no network: inline style, the PNGs beside it referenced by relative path, so
the folder is the unit to copy), and the PNGs ``returns.png`` (return and success per
episode against env steps, coloured exploring/planning, a line at each checkpoint swap),
``validation.png`` (validation score of every checkpoint) and ``planning.png`` (the mpc
node's planning time and missed ticks over the run). A plot without data is left out.

Episodes. The twin publishes, at a reset, ``episode``, ``episode_start`` (stamped with the
new episode's first state) and then that first ``task_state`` (no ``reward``), right
after the previous episode's last ``task_state`` and ``reward``. The recorder receives
these on separate subscriptions, so their bag times race (in a 90 s hand run, 27 of 45
last states and 30 of 45 last rewards were stamped just *after* the ``episode`` message).
States are therefore split by header stamp with the reader's
:func:`~dexmpc_ros.data.bag_reader.split_states`, and each ``reward`` (no header) goes with
the step state received nearest to it (:func:`~dexmpc_ros.data.bag_reader.split_ticks`).
Bags recorded before the twin published ``episode_start`` fall back to bag time, each
boundary moved half a control tick past the ``episode`` message; that assumes automatic
resets (a reset by the ``reset_episode`` service starts a tick, so its first step's state
comes with it and the previous episode's last state is misread as the new one's).
Episode ``k`` runs from its reset state to the next episode's; the last, unfinished
episode and anything before the first episode are left out. ``steps`` counts its
rewards (env steps); the first episode is *partial* when it has fewer steps than the
twin's ``episode_steps`` (the recorder joined late) and is then left out of every
statistic.

Success is per task (:data:`~dexmpc_ros.runtime.run_records.SUCCESS_RULES`): valve
turning succeeds when the final ``|angle_error| < 0.25`` rad (PDDM, papers.md §7.5). Tasks
without a rule get returns only.

Learner iterations. Episodes are grouped by the checkpoint the mpc node was planning with
when they started; a group ends at the next swap. Swap times come from the mpc node's log
(``now planning with <path>``, wall clock) unless the run used simulated time (the bag is
then in simulated time): then from the ``checkpoint`` value of its diagnostics in the bag,
up to one diagnostics period (1 s) late.

Planner timing. The mpc node publishes, once a second, the p50/p99 planning time over its
last 200 ticks, its missed-tick count and whether it explores; single ticks are not
recorded, so the report shows those windows over time.

Modules. This one builds the :class:`Report` and writes the folder; the pieces are in
runtime/run_records.py (the records: success rules, swaps, episodes, groups, the run's
outcome and node verdicts; reading spec.yaml, outcome.json, the logs and the git commit),
runtime/run_bag.py (episodes, swaps and diagnostics from the bag; the checkpoint history),
runtime/report_content.py (the report's blocks, rendered as Markdown and HTML) and
runtime/report_plots.py (the PNGs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dexmpc_ros.core.files import write_text_atomic
from dexmpc_ros.data.bag_reader import Stamped, bag_info
from dexmpc_ros.runtime.episode_record import EpisodeRecord
from dexmpc_ros.runtime.report_content import render_html, render_markdown, report_blocks
from dexmpc_ros.runtime.report_plots import PLOTS, plot_all
from dexmpc_ros.runtime.run_bag import (diagnostics_of, episode_records, episode_steps_of,
                                        group_episodes, mark_evaluations, planning_swaps,
                                        read_checkpoints, read_run_bag, task_of)
from dexmpc_ros.runtime.run_records import (REPORT_DIR, SUCCESS_RULES, Report, RunOutcome,
                                            load_spec, node_names, node_verdicts, read_outcome,
                                            write_outcome)


# Building ----------------------------------------------------------------------------------
def build_report(run_dir: str | Path, outcome: RunOutcome | None = None) -> Report:
    """
    Read a run folder into a :class:`Report` (no files written).

    Args:
        run_dir: the run folder.
        outcome: what ``dexmpc up`` knew; default ``report/outcome.json`` if present.

    Raises:
        ConfigError: not a run folder (names the path). BagError: a corrupt bag.
        CheckpointError: an unreadable models/history.json.
    """
    run_dir = Path(run_dir)
    spec = load_spec(run_dir)
    outcome = outcome if outcome is not None else read_outcome(run_dir)
    task = task_of(spec)
    rule = SUCCESS_RULES.get(task or '')
    notes: list[str] = []
    bag_dir = run_dir / 'bag'
    bag: dict[str, list[Stamped]] = {'diagnostics': []}
    start_ns = duration_s = None
    if bag_dir.exists():
        info = bag_info(bag_dir)
        start_ns, duration_s = info.start_ns, info.duration_ns * 1e-9
        bag = read_run_bag(bag_dir)
    else:
        notes.append(f'no bag in {bag_dir}: episodes, timing and safety are not available')
    names = {kind: node_names(spec, kind) for kind in ('mpc', 'safety', 'learner')}
    for kind, found in names.items():
        if len(found) > 1:
            notes.append(f'several {kind} nodes ({", ".join(found)}): only {found[0]} shown')
    mpc, safety, learner = (diagnostics_of(bag['diagnostics'], found[0]) if found else []
                            for found in names.values())
    swaps = planning_swaps(run_dir, spec, mpc)
    episodes: list[EpisodeRecord] = []
    if 'episode' in bag:
        if rule is not None and 'task_state' not in bag:
            notes.append(f'no task_state topic: success of {task} is not available')
            rule = None
        episodes = mark_evaluations(episode_records(bag, rule, swaps, episode_steps_of(spec)),
                                    spec)
    elif bag_dir.exists():
        notes.append('the bag has no episode topic: no per-episode results')
    if task and rule is None and 'task_state' in bag:
        notes.append(f'task {task!r} has no success rule: returns only')
    reward_ns = np.array([t for t, _ in bag.get('reward', [])], dtype=np.int64)
    return Report(run_dir, spec, outcome, node_verdicts(run_dir, spec, outcome), task, rule,
                  start_ns, duration_s, episodes, swaps, group_episodes(episodes, spec),
                  read_checkpoints(run_dir), mpc, safety, learner, reward_ns, notes)


# Writing -----------------------------------------------------------------------------------
def write_report(run_dir: str | Path, outcome: RunOutcome | None = None) -> Path:
    """
    Build the report of a run and write it into ``<run>/report/``.

    Args:
        run_dir: the run folder.
        outcome: saved to ``report/outcome.json`` first when given (``dexmpc up``).

    Returns:
        The path of ``report.html``.

    Raises:
        as :func:`build_report`, and OSError when the folder cannot be written.
    """
    run_dir = Path(run_dir)
    load_spec(run_dir)  # a missing or foreign folder fails before anything is written
    if outcome is not None:
        write_outcome(run_dir, outcome)
    report = build_report(run_dir, outcome)
    folder = run_dir / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name in (*PLOTS, 'report.md', 'report.html'):
        (folder / name).unlink(missing_ok=True)  # a plot without data now must not linger
    plots = plot_all(report, folder)
    blocks = report_blocks(report, plots)
    title = f'dexmpc run report: {report.spec["name"]}'
    for name, text in (('report.md', render_markdown(blocks)),
                       ('report.html', render_html(blocks, title))):
        write_text_atomic(folder / name, lambda f, text=text: f.write(text), fsync=False)
        (folder / name).chmod(0o644)  # the temporary file it was renamed from is 0600
    return folder / 'report.html'
