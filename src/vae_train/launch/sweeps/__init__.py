"""Sweeps (multiruns): each job's outcome and score (``outcome``), the summary tables (``summary``),
TensorBoard's HParams dashboard (``hparams``) and the Hydra callback that writes them (``callback``).
Nothing here imports TensorFlow: the callback also runs in the launching process of joblib and
submitit sweeps, which never trains."""
