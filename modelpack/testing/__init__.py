"""`modelpack test`: run a release's serving image (or the local runtime), its golden cases and gates."""
