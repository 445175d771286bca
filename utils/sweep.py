"""``python -m utils.sweep`` = ``python -m sweep`` (the name documented before the runner got its own package)."""
import runpy

if __name__ == "__main__":
    runpy.run_module("sweep", run_name="__main__", alter_sys=True)
