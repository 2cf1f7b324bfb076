"""How the tests start chrono: the way a script would, as a separate process.

`-P` keeps Python from putting the working directory first on sys.path: run
from a checkout, `-m chrono.cli` would otherwise import the source tree instead
of the chrono that pip installed (which, after a non-editable install, is the
only one with the built C core).
"""
import sys

CHRONO = [sys.executable, "-P", "-m", "chrono.cli"]
