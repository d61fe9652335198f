"""Packfile -> bundle artifact + record: lockfiles, dataset hashes, metrics and params, golden cases."""
