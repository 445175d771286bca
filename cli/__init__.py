"""The command line of every script, the reference's ``argument.py``: the flags (``cli.options``, ``cli.yoco_options``)
and their parsing, presets and derived settings (``cli.arguments``). Nothing here imports torch, so ``-h`` is fast."""
