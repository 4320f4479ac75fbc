"""Sampling planners over a batched model: ``base`` (shared types and scoring),
``random_shooting``, ``cem``, ``mppi`` (PDDM's filtered MPPI). One planner per file."""
