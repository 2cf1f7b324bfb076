# The C parts are built by cffi: the emulator core (native/build_core.py) and the
# store's page encoder (native/pages/build_pages.py); everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["native/build_core.py:ffibuilder", "native/pages/build_pages.py:ffibuilder"])
