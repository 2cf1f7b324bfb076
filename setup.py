# The C core is built by cffi (see native/build_core.py); everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["native/build_core.py:ffibuilder"])
