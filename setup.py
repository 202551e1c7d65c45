"""Only job: compile the cffi extensions (uring's, the store's key index) at
install (cffi_modules must be a setup() argument; pyproject.toml carries
everything else)."""
from setuptools import setup

setup(cffi_modules=["uring/_build.py:ffibuilder", "statelets/_index_build.py:ffibuilder"])
