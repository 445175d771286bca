"""The two ways a run ends early on purpose; ``cli.arguments.cli`` turns both into one ``error:`` line.

No imports: the command line (``-h`` included) must work without loading torch.
"""


class UserError(Exception):
    """Bad input from the user: reported as one line ``error: ...`` and exit status 2."""


class StopTraining(RuntimeError):
    """A non-finite loss: training cannot continue (exit status 3)."""
