"""hpcwizard: launch and watch ML training on a Slurm cluster."""

__version__ = "0.1.0"
