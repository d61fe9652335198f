"""Retention: the prune rule (`retention`, pure: versions and facts in, a frozen plan out) and `prune`
(reading those facts from a repository, deleting referrers first)."""
