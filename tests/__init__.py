"""Despina's test suite (``make test``: two pytest-xdist processes, see tests/conftest.py)."""

import os

# Under pytest-xdist each test process computes on one OpenMP thread by default, set here
# before torch or NumPy load: two processes of two spinning OpenMP threads each on two
# cores tripled the demo's test. A test that wants more threads asks, as the code does.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
