"""
Sequential latent models and image encoders (home of SLAC, MELD and LatCo's models).

One file per model; camera frames -> latent states, trained from recorded bags. The
perception node (``ros/``) adapts them; latent planners and policies read their states.
Empty until issues 16-17 land: this package marks where they go.
"""
