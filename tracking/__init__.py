"""Experiment tracking (Aim, TensorBoard): the run's side ``tracking.client`` and the tracker process with its
backends ``tracking.backends`` (docs/tracking.md). Importing this package imports neither torch nor a tracker."""
