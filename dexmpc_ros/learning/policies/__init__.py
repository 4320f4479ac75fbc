"""Learned policies: ``mlp`` (Gaussian MLP policies and their checkpoints), ``ppo``
(MBMF's model-free stage), ``dagger`` (distilling an MPC expert)."""
