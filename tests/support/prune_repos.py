"""Registry repositories for the prune tests: tested releases, shared digests and a rollback history."""

from __future__ import annotations

from dataclasses import dataclass

from modelpack import api
from modelpack.errors import NotFoundError
from modelpack.oci.target import Target
from modelpack.registry.client import RegistryRepository
from modelpack.targets import Targets
from support.places import attach_report, make_release, runtime

VERSIONS = ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "1.7.0"]


@dataclass
class Repo:
    host: str
    name: str
    target: RegistryRepository
    digests: dict[str, str]  # tag -> digest
    reports: dict[str, str]  # version -> its test report's digest

    @property
    def ref(self) -> str:
        return f"{self.host}/{self.name}"


def populate(host: str, name: str, targets: Targets) -> Repo:
    """Eight tested releases; 1.2.1 shares 1.2.0's digest, 0.9.0 shares 1.7.0's; prod was promoted 1.0.0,
    1.3.0, 1.4.0, rolled back (to 1.3.0), promoted 1.5.0; staging runs 1.6.0."""
    where = targets.open(f"{host}/{name}")
    assert isinstance(where.target, RegistryRepository)
    target = where.target
    digests: dict[str, str] = {}
    reports: dict[str, str] = {}
    for v in VERSIONS:
        release = make_release(target, v, v)
        digests[v] = release.digest
        reports[v] = attach_report(target, release).digest
    for alias, of in (("1.2.1", "1.2.0"), ("0.9.0", "1.7.0")):
        target.put_manifest(alias, target.get_manifest(of))
        digests[alias] = digests[of]
    ref = f"{host}/{name}"
    rt = runtime()
    for v in ("1.0.0", "1.3.0", "1.4.0"):
        api.promote(targets, f"{ref}:{v}", "prod", runtime=rt)
    api.rollback(targets, ref, "prod", runtime=rt)
    api.promote(targets, f"{ref}:1.5.0", "prod", runtime=rt)
    api.promote(targets, f"{ref}:1.6.0", "staging", runtime=rt)
    return Repo(host, name, target, digests, reports)


def gone(target: Target, digest: str) -> bool:
    try:
        target.get_manifest(digest)
    except NotFoundError:
        return True
    return False
