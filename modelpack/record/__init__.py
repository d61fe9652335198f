"""The record and what it is made of: metrics and params, golden cases, git provenance.

A leaf of the package graph: packfile, bundle, release, runner and image all read these types, and this
package imports none of them.
"""

from modelpack.record.record import DatasetEntry, FileEntry, LockSummary, Metric, Record

__all__ = ["DatasetEntry", "FileEntry", "LockSummary", "Metric", "Record"]
