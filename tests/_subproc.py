"""Run a Python subprocess against the INSTALLED package.

The working directory of pytest is the source tree, whose ``subspace_linalg/`` folder
has no compiled ``_C``; a child started there would import that folder instead of the
installed package. Children run from a temporary directory outside the tree."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile


def run_python(args, *, env=None, timeout=300):
    """``python <args>`` from outside the source tree; returns the CompletedProcess."""
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                              env=env if env is not None else dict(os.environ), timeout=timeout)
