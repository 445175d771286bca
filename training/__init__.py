"""The learning machinery every domain shares: augmentation (``training.augment``), the training and
evaluation epochs (``training.epochs``), k-means (``training.kmeans``), the deterministic stand-ins
(``training.determinism``) and the arithmetic switch (``training.precision``)."""
