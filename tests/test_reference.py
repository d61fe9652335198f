"""Reference parsing: docker's grammar, Docker Hub short names, oci: layouts, and clear refusals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelpack.errors import UsageError
from modelpack.registry.reference import DOCKER_HUB_AUTH_KEY, Reference, is_loopback, parse_reference

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("ghcr.io/acme/sentiment:1.4.0", "ghcr.io", "acme/sentiment", "1.4.0", None),
        ("127.0.0.1:5000/acme/iris", "127.0.0.1:5000", "acme/iris", None, None),
        ("localhost/x", "localhost", "x", None, None),
        ("localhost:5000/a/b/c:v_1", "localhost:5000", "a/b/c", "v_1", None),
        ("acme/model", "docker.io", "acme/model", None, None),
        ("ubuntu", "docker.io", "library/ubuntu", None, None),
        ("ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", None),
        ("docker.io/ubuntu", "docker.io", "library/ubuntu", None, None),
        ("index.docker.io/acme/x", "docker.io", "acme/x", None, None),
        (f"host.example/repo@{D}", "host.example", "repo", None, D),
        (f"host.example:8443/repo:prod@{D}", "host.example:8443", "repo", "prod", D),
        ("[::1]:5000/my-repo/a__b.c", "[::1]:5000", "my-repo/a__b.c", None, None),
    ],
)
def test_parses(text: str, registry: str, repository: str, tag: str | None, digest: str | None) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert not ref.is_layout


def test_docker_hub_hosts_and_auth_key() -> None:
    ref = parse_reference("acme/model:1")
    assert ref.api_host == "registry-1.docker.io"
    assert ref.auth_key == DOCKER_HUB_AUTH_KEY
    other = parse_reference("127.0.0.1:5000/a")
    assert other.api_host == other.auth_key == "127.0.0.1:5000"


def test_str_ref_and_with_tag() -> None:
    ref = parse_reference("127.0.0.1:5000/a/b")
    assert ref.ref == "latest"
    assert str(ref.with_tag("prod")) == "127.0.0.1:5000/a/b:prod"
    pinned = ref.with_tag("v1").with_digest(D)
    assert pinned.ref == D and str(pinned) == f"127.0.0.1:5000/a/b:v1@{D}"
    assert parse_reference(str(pinned)) == pinned


@pytest.mark.parametrize(
    ("text", "path", "tag"),
    [
        ("oci:/store", "/store", None),
        ("oci:/store:iris", "/store", "iris"),
        ("oci:/store:iris:1.0", "/store", "iris:1.0"),
        ("oci:./rel/dir:v1", "./rel/dir", "v1"),
        ("oci:layout", "layout", None),
        ("oci:/a:b/c:tag", "/a:b/c", "tag"),  # a ':' before the last '/' belongs to the path
    ],
)
def test_layout_references(text: str, path: str, tag: str | None) -> None:
    ref = parse_reference(text)
    assert ref.is_layout and ref.layout_path == path and ref.tag == tag
    assert ref.name == f"oci:{path}"


def test_layout_with_digest() -> None:
    ref = parse_reference(f"oci:/store@{D}")
    assert ref.layout_path == "/store" and ref.digest == D


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty reference"),
        ("   ", "empty reference"),
        ("ghcr.io/Acme/model", "uppercase"),
        ("ghcr.io/acme/model:bad!tag", "tag 'bad!tag'"),
        ("ghcr.io/acme/model:.hidden", "tag '.hidden'"),
        ("ghcr.io/acme/model@sha256:1234", "digest 'sha256:1234'"),
        ("ghcr.io/acme/model@md5:" + "a" * 32, "malformed"),
        ("ghcr.io//model", "empty path component"),
        ("ghcr.io/acme/-model", "characters not allowed"),
        ("oci:", "names no layout directory"),
        ("oci:/store:", "empty tag"),
        ("a b", "whitespace"),
        ("bad_host:99999999/x", "malformed"),
    ],
)
def test_malformed_references_name_the_problem(text: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem) as info:
        parse_reference(text)
    assert info.value.exit_code == 2


def test_too_long() -> None:
    with pytest.raises(UsageError, match="longer than 255"):
        parse_reference("host.example/" + "a" * 300)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1:5000", True),
        ("127.5.6.7", True),
        ("localhost", True),
        ("LOCALHOST:80", True),
        ("[::1]:5000", True),
        ("::1", True),
        ("10.0.0.1:5000", False),
        ("ghcr.io", False),
        ("localhost.example.com", False),
        ("[fe80::1]:5000", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_arbitrary_text_raises_only_usage_error(text: str) -> None:
    try:
        ref = parse_reference(text)
    except UsageError:
        return
    assert isinstance(ref, Reference)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"\A[a-z0-9.:/@_-]{1,80}\Z"))
def test_reference_like_text_raises_only_usage_error(text: str) -> None:
    try:
        ref = parse_reference(text)
    except UsageError:
        return
    assert parse_reference(str(ref)) == ref
