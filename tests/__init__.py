"""Despina's test suite (``make test`` runs it in two pytest-xdist processes: Makefile)."""

import os

# Under pytest-xdist each test process computes on one OpenMP thread by default, set here
# before torch or NumPy load, so two processes keep two cores busy rather than running four
# threads on them. A test that wants more threads asks, as the code under test does.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
