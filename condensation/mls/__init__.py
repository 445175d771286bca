"""MDC's adaptive subset loss: most-learnable-subset (MLS) selection and freezing (docs/algorithms.md)."""
