"""Run by host/build.rs with the interpreter certhost is built against: prints the
site-packages directories of a virtual environment, separated by ":", and nothing for a plain
interpreter. Workers run with PYTHONHOME = the base prefix (sys.base_prefix), which does not
see a venv's packages; bootstrap.py adds these directories to sys.path."""
import os
import site
import sys

if sys.prefix != sys.base_prefix:
    print(":".join(os.path.abspath(d) for d in site.getsitepackages() if ":" not in d))
