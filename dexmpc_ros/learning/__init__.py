"""
Learning: models and policies in pure torch/numpy (no ROS).

Shared blocks live here at the top: ``normalizer`` (per-dimension statistics), ``ensemble``
(the batched ensemble MLP), ``torch_threads`` (the thread-count guard every model call runs
under), ``checkpoint`` (the self-describing, atomically written checkpoint directory) and
``store`` (a run's checkpoint history: propose, accept, roll back). One file per method
under its kind: ``dynamics/`` (learned dynamics for MPC: the Δ-state ensemble of
MBMF/PDDM, its config, fast rollout and training), ``policies/`` (MLP policies, PPO,
DAgger). Next: ``latent/`` (sequential latent models), ``policies/diffusion.py``,
``policies/sac.py``.
"""
