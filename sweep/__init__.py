"""Table sweeps: a reproduction script's job list over the local GPUs (``sweep.local``) or Slurm (``sweep.slurm``).

    python -m sweep SCRIPT [options] [-- SCRIPT ARGS...]      (docs/cluster.md)
"""
