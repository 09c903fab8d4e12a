"""batchbox's benchmarks: ``nox -s bench``, or ``python -m benchmarks`` (see ``run.py``)."""
