"""Entry script of the frozen app: the `musicssl` console script's `main`, and `-m` for workers.

Why `-m`: the engine starts helper processes as `sys.executable -m musicssl.engine.<module>`
(the desktop app's analysis worker, engine/analysis_process.py). In a frozen app sys.executable
is this program, not a Python interpreter, so it runs such a module itself, as `python -m` would;
only the app's own modules, so the binary cannot be made to run arbitrary code by name.
"""

import runpy
import sys


def run() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "-m" and sys.argv[2].startswith("musicssl."):
        module = sys.argv[2]
        sys.argv = [sys.argv[0], *sys.argv[3:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)  # its sys.exit() ends us
        return 0
    from musicssl.engine.cli import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
