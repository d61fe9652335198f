"""The local store: an OCI layout directory (`blobs`, `layout`), collection (`gc`, `caches`), one repository
of it seen as a registry repository is (`storerepo`), source-backed weight layers (`sourced`), the stat
cache (`statcache`) and atomic writes (`atomic`). docs/store.md has its layout on disk and its rules."""
