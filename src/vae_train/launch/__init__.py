"""The side of vae-train that never imports TensorFlow: the two commands (``train_cli``, ``eval_cli``),
the fast ``--help`` (``fast_help``), the preflight check (``preflight``) and the sweeps (``sweeps``).
Work that needs TensorFlow is imported inside the commands, once their arguments are read."""
