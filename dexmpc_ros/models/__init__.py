"""
Learned dynamics models (pure torch/numpy, no ROS).

``normalizer`` holds per-dimension mean/std statistics, ``ensemble`` the batched
ensemble MLP, ``dynamics`` the Δ-state model of MBMF/PDDM (papers.md §0.1 item 1, §7.2)
with its training, batched prediction and N × H rollouts (``dynamics_config`` its
settings, ``torch_threads`` the thread-count guard every model call runs under), and
``checkpoint`` the self-describing, atomically written checkpoint directory the
controllers load.
"""
