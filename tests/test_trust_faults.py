"""What goes wrong around signatures, each one line and exit 1: a wrong key, a tampered payload, a
signature over another digest, a model signature over other files, an unreadable key, an encrypted key
without its password, a registry that refuses the referrer."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from fixtures.registry import RegistryProcess
from support.clirun import run_cli
from support.registry_helpers import client_for
from support.release_fixtures import push
from support.signed import Built, built, open_target, pushed_copy, release_signature_bytes

from modelpack.errors import VerificationError
from modelpack.evidence import signatures
from modelpack.evidence.evidence import attach
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor
from modelpack.registry.client import RegistryRepository
from modelpack.registry.transport import RetryPolicy
from modelpack.release.view import load_release
from modelpack.trust import cosign, keys, oms


@pytest.fixture
def releases(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return built(tmp_path_factory)


@pytest.fixture
def key(tmp_path: Path) -> Path:
    keys.generate(tmp_path / "release")
    return tmp_path / "release"


def _one_line_failure(done: object, *needles: str) -> str:
    returncode, stderr = done.returncode, done.stderr
    assert returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return str(lines[0])


def _attach_bundle(b: Built, ref: str, subject_digest: str, raw: bytes, predicate: str) -> None:
    targets, target = open_target(b, ref)
    with targets:
        got = target.get_manifest(subject_digest)
        subject = Descriptor(got.media_type, got.digest, len(got.raw))
        annotations = {mt.ANN_BUNDLE_CONTENT: "dsse-envelope", mt.ANN_BUNDLE_PREDICATE: predicate}
        attach(target, subject, mt.SIGSTORE_BUNDLE, raw, mt.SIGSTORE_BUNDLE, annotations)


def test_verify_with_a_wrong_key_names_the_signer(
    registry: RegistryProcess, releases: Built, key: Path, tmp_path: Path
) -> None:
    ref, _ = pushed_copy(releases, registry.host, releases.bundle_tag)
    assert run_cli("sign", ref, "--key", f"{key}.key").returncode == 0
    other = keys.generate(tmp_path / "other")
    done = run_cli("verify", ref, "--key", str(other.public))
    _one_line_failure(done, "not by a given key", other.keyid[:12])
    assert "FAIL" in done.stdout


def test_an_unsigned_release_fails_verify(registry: RegistryProcess, releases: Built, key: Path) -> None:
    ref, _ = pushed_copy(releases, registry.host, releases.bundle_tag)
    _one_line_failure(run_cli("verify", ref, "--key", f"{key}.pub"), "no release signature attached")


def test_a_tampered_payload_fails_even_beside_a_good_signature(
    registry: RegistryProcess, releases: Built, key: Path
) -> None:
    ref, digest = pushed_copy(releases, registry.host, releases.index_tag)
    assert run_cli("sign", ref, "--key", f"{key}.key", "--no-model").returncode == 0
    targets, target = open_target(releases, ref)
    with targets:
        doc = json.loads(release_signature_bytes(target, digest))
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    statement["predicate"] = {"note": "changed after signing"}
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    _attach_bundle(releases, ref, digest, json.dumps(doc).encode(), cosign.PREDICATE_TYPE)
    _one_line_failure(run_cli("verify", ref, "--key", f"{key}.pub"), "does not verify")


def test_a_signature_over_another_digest_is_refused(
    registry: RegistryProcess, releases: Built, key: Path
) -> None:
    ref, digest = pushed_copy(releases, registry.host, releases.index_tag)
    other_ref = ref.rsplit(":", 1)[0] + ":2.0.0"
    other_digest = push(releases.store, releases.bundle_tag, other_ref)
    assert run_cli("sign", ref, "--key", f"{key}.key").returncode == 0
    targets, target = open_target(releases, ref)
    with targets:
        copied = release_signature_bytes(target, digest)
        model_sig = signatures.model_signature(target, load_release(target, digest).bundle.digest)
    assert model_sig is not None
    _attach_bundle(releases, other_ref, other_digest, copied, cosign.PREDICATE_TYPE)
    _attach_bundle(releases, other_ref, other_digest, model_sig, oms.PREDICATE_TYPE)
    done = run_cli("verify", other_ref, "--key", f"{key}.pub", "--json")
    _one_line_failure(done, f"is over sha256:{digest.split(':')[1]}", other_digest)
    checks = {c["kind"]: c for c in json.loads(done.stdout)["checks"]}
    assert not checks["signature"]["ok"]
    assert not checks["model-signature"]["ok"]
    assert "not over the release's files" in checks["model-signature"]["detail"]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "does not exist"),
        (b"not a key at all\n", "is not a PEM private key"),
    ],
)
def test_an_unreadable_key_is_one_line(
    registry: RegistryProcess, releases: Built, tmp_path: Path, content: bytes | None, needle: str
) -> None:
    ref, _ = pushed_copy(releases, registry.host, releases.bundle_tag)
    path = tmp_path / "broken.key"
    if content is not None:
        path.write_bytes(content)
    _one_line_failure(run_cli("sign", ref, "--key", str(path)), needle, str(path))
    _one_line_failure(run_cli("verify", ref, "--key", str(path)), str(path))


def test_an_encrypted_key_without_its_password_is_one_line(
    registry: RegistryProcess, releases: Built, tmp_path: Path
) -> None:
    ref, _ = pushed_copy(releases, registry.host, releases.bundle_tag)
    keys.generate(tmp_path / "locked", b"secret")
    env = {"MODELPACK_KEY_PASSWORD": ""}
    _one_line_failure(run_cli("sign", ref, "--key", str(tmp_path / "locked.key"), env=env), "is encrypted")
    locked = str(tmp_path / "locked.key")
    wrong = run_cli("sign", ref, "--key", locked, env={"MODELPACK_KEY_PASSWORD": "nope"})
    _one_line_failure(wrong, "wrong password")
    assert "secret" not in wrong.stderr and "nope" not in wrong.stderr


class Refusing(httpx.BaseTransport):
    """Forwards to the real registry but answers 403 to the PUT of a signature's manifest: a registry that
    will not store OCI 1.1 artifacts with a subject (what the real one cannot be told to do)."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and "/manifests/" in request.url.path and b"sigstore" in request.read():
            denied = {"errors": [{"code": "DENIED", "message": "artifacts not allowed"}]}
            return httpx.Response(403, json=denied)
        return self.real.handle_request(request)


def test_a_registry_that_refuses_the_referrer_is_one_clear_error(
    registry: RegistryProcess, releases: Built, key: Path
) -> None:
    ref, digest = pushed_copy(releases, registry.host, releases.bundle_tag)
    repo = ref.split("/", 1)[1].rsplit(":", 1)[0]
    client = client_for(
        registry.host, transport=Refusing(), sleep=lambda _s: None, retry=RetryPolicy(attempts=1)
    )
    with client:
        target = RegistryRepository(client, repo)
        release = load_release(target, digest)
        with pytest.raises(VerificationError) as caught:
            signatures.sign(target, release, keys.load_private(f"{key}.key"), name=repo)
    message = str(caught.value)
    assert "refused the bundle manifest signature" in message and "not signed" in message
    assert "\n" not in message


def test_keygen_never_replaces_a_key_and_needs_a_password_to_encrypt(tmp_path: Path) -> None:
    assert run_cli("keygen", str(tmp_path / "k")).returncode == 0
    before = (tmp_path / "k.key").read_bytes()
    again = run_cli("keygen", str(tmp_path / "k"))
    assert again.returncode == 2 and "never replaces a key" in again.stderr
    assert (tmp_path / "k.key").read_bytes() == before
    no_password = run_cli("keygen", str(tmp_path / "e"), "--encrypt", env={"MODELPACK_KEY_PASSWORD": ""})
    assert no_password.returncode == 2 and "MODELPACK_KEY_PASSWORD" in no_password.stderr
    assert not (tmp_path / "e.key").exists()
