"""Learned dynamics for MPC: ``model`` (Δ-state ensemble, papers.md §0.1 item 1, §7.2),
``config``, ``fast_rollout`` (N × H rollouts on CPU threads), ``training`` (from bags)."""
