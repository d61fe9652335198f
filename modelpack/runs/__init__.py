"""Experiment runs: records of their own (record.py), written while training runs (live.py), stored as
OCI artifacts in an experiment's repository (artifact.py, listing.py, save.py), queried (query.py)."""
