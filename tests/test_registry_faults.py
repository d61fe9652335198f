"""Faults a real registry will not produce on demand, scripted with httpx.MockTransport."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from support.registry_helpers import blob, opener, random_bytes

from modelpack.errors import AuthError, DigestMismatchError, NotFoundError, RegistryError
from modelpack.oci import digest as digests
from modelpack.oci import mediatypes
from modelpack.oci.model import MAX_MANIFEST_BYTES, Descriptor
from modelpack.oci.target import RawManifest
from modelpack.registry import RegistryClient, RegistryRepository, RetryPolicy, UploadOptions
from modelpack.registry.failures import retry_after as _retry_after

HOST = "registry.test"


def make_client(
    handler: Callable[[httpx.Request], httpx.Response], sleeps: list[float] | None = None, **kw: object
) -> RegistryClient:
    clock = [0.0]
    record = sleeps if sleeps is not None else []

    def sleep(seconds: float) -> None:
        record.append(seconds)
        clock[0] += seconds

    return RegistryClient(
        HOST,
        credentials=lambda _: None,
        transport=httpx.MockTransport(handler),
        clock=lambda: clock[0],
        sleep=sleep,
        jitter=lambda: 1.0,
        **kw,  # type: ignore[arg-type]
    )


def test_retries_503_and_429_honouring_retry_after() -> None:
    answers = iter(
        [
            httpx.Response(503, headers={"Retry-After": "7"}),
            httpx.Response(429),
            httpx.Response(200, json={"name": "a", "tags": ["x"]}),
        ]
    )
    sleeps: list[float] = []
    client = make_client(lambda r: next(answers), sleeps)
    assert RegistryRepository(client, "a").list_tags() == ["x"]
    assert sleeps[0] == 7.0  # Retry-After wins over the backoff
    assert sleeps[1] == pytest.approx(1.0)  # base 0.5 * 2 ** 1 with jitter pinned at the maximum


def test_retries_are_bounded_in_attempts() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(502)

    client = make_client(handler, retry=RetryPolicy(attempts=3))
    with pytest.raises(RegistryError, match=r"tag list in registry.test/a: registry.test answered HTTP 502"):
        RegistryRepository(client, "a").list_tags()
    assert len(calls) == 3


def test_retries_are_bounded_in_total_time() -> None:
    sleeps: list[float] = []
    client = make_client(
        lambda r: httpx.Response(503, headers={"Retry-After": "50"}),
        sleeps,
        retry=RetryPolicy(attempts=10, max_total=120.0),
    )
    with pytest.raises(RegistryError):
        RegistryRepository(client, "a").list_tags()
    assert sum(sleeps) <= 120.0 and len(sleeps) == 2


def test_torn_connection_is_retried() -> None:
    answers: Iterator[httpx.Response | Exception] = iter(
        [
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            httpx.Response(200, json={"tags": ["ok"]}),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert RegistryRepository(make_client(handler), "a").list_tags() == ["ok"]


def test_connection_refused_names_the_host() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    sleeps: list[float] = []
    client = RegistryClient(
        f"127.0.0.1:{port}", credentials=lambda _: None, sleep=sleeps.append, retry=RetryPolicy(attempts=2)
    )
    with pytest.raises(RegistryError, match=rf"cannot connect to 127\.0\.0\.1:{port}: connection refused"):
        RegistryRepository(client, "a").list_tags()
    assert len(sleeps) == 1


def test_retry_after_http_date() -> None:
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480.0 - 10) == pytest.approx(10.0)
    assert _retry_after("soon", 0) is None


def test_digest_mismatch_keeps_nothing(tmp_path: Path) -> None:
    real = b"the real weights"
    desc = blob(real)
    client = make_client(lambda r: httpx.Response(200, content=b"tampered weights"))
    dest = tmp_path / "blob"
    with pytest.raises(DigestMismatchError, match="refused"):
        RegistryRepository(client, "a").download_blob(desc, dest)
    assert list(tmp_path.iterdir()) == []
    longer = make_client(lambda r: httpx.Response(200, content=real + b"extra"))
    with pytest.raises(DigestMismatchError, match="larger"):
        RegistryRepository(longer, "a").download_blob(desc, dest)
    assert list(tmp_path.iterdir()) == []


class _Counting(httpx.SyncByteStream):
    def __init__(self, total: int) -> None:
        self.total, self.given = total, 0

    def __iter__(self) -> Iterator[bytes]:
        while self.given < self.total:
            self.given += 1 << 20
            yield b" " * (1 << 20)


@pytest.mark.parametrize("declare_length", [True, False])
def test_oversized_manifest_is_refused_unread(declare_length: bool) -> None:
    stream = _Counting(64 << 20)
    headers = {"Content-Type": mediatypes.OCI_MANIFEST}
    if declare_length:
        headers["Content-Length"] = str(64 << 20)
    client = make_client(lambda r: httpx.Response(200, headers=headers, stream=stream))
    with pytest.raises(RegistryError, match="over the 4194304-byte manifest limit"):
        RegistryRepository(client, "a").get_manifest("big")
    assert stream.given <= MAX_MANIFEST_BYTES + (1 << 20)


def test_manifest_digest_mismatch_is_refused() -> None:
    raw = b'{"schemaVersion":2}'
    wrong = "sha256:" + "0" * 64
    client = make_client(lambda r: httpx.Response(200, content=raw, headers={"Docker-Content-Digest": wrong}))
    with pytest.raises(DigestMismatchError):
        RegistryRepository(client, "a").get_manifest("v1")
    with pytest.raises(DigestMismatchError):
        RegistryRepository(client, "a").get_manifest(wrong)


def test_put_manifest_compares_docker_content_digest() -> None:
    raw = b'{"schemaVersion":2,"manifests":[]}'
    client = make_client(
        lambda r: httpx.Response(201, headers={"Docker-Content-Digest": "sha256:" + "1" * 64})
    )
    with pytest.raises(DigestMismatchError, match="rewrote the bytes"):
        RegistryRepository(client, "a").put_manifest("v1", RawManifest(raw, mediatypes.OCI_INDEX, ""))


def test_link_pagination_follows_next() -> None:
    pages = {
        None: (["a", "b"], '</v2/m/tags/list?last=b&n=2>; rel="next"'),
        "b": (["c", "d"], '</v2/m/tags/list?last=d&n=2>; rel="next"'),
        "d": (["e"], None),
    }
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        assert request.url.params.get("n") == "2"
        tags, link = pages[request.url.params.get("last")]
        return httpx.Response(200, json={"name": "m", "tags": tags}, headers={"Link": link} if link else {})

    assert RegistryRepository(make_client(handler), "m").list_tags(page_size=2) == ["a", "b", "c", "d", "e"]
    assert len(seen) == 3


def test_not_found_and_auth_errors_are_clear() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/manifests/1.2"):
            return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "unknown"}]})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="x"'})

    r = RegistryRepository(make_client(handler), "acme/iris")
    with pytest.raises(NotFoundError, match=r"^tag 1\.2 not found in registry\.test/acme/iris$"):
        r.get_manifest("1.2")
    with pytest.raises(AuthError, match=r"registry\.test/acme/iris requires authentication.*modelpack login"):
        r.list_tags()


class ScriptedUploads:
    """An in-memory upload endpoint: sessions with relative Locations carrying a query, 416 on demand."""

    def __init__(self, fail_patch: set[int] | None = None, min_chunk: int = 0) -> None:
        self.sessions: dict[str, bytearray] = {}
        self.blobs: dict[str, bytes] = {}
        self.fail_patch = fail_patch or set()
        self.patches = 0
        self.min_chunk = min_chunk
        self.requests: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.raw_path.decode()}")
        path = request.url.path
        if request.method == "HEAD":
            return httpx.Response(200 if path.rsplit("/", 1)[1] in self.blobs else 404)
        if request.method == "POST":
            sid = f"s{len(self.sessions)}"
            self.sessions[sid] = bytearray()
            headers = {"Location": f"/upload/{sid}?state=a%2Fb", "Range": "0-0"}
            if self.min_chunk:
                headers["OCI-Chunk-Min-Length"] = str(self.min_chunk)
            return httpx.Response(202, headers=headers)
        match = re.match(r"/upload/(s\d+)", path)
        assert match and request.url.params.get("state") == "a/b", "Location query must be kept"
        sid = match.group(1)
        data = self.sessions[sid]
        if request.method == "PATCH":
            self.patches += 1
            body = request.read()
            start = int(request.headers["Content-Range"].split("-")[0])
            if self.patches in self.fail_patch or start != len(data):
                return httpx.Response(416, headers={"Range": f"0-{max(len(data) - 1, 0)}"})
            data += body
            return httpx.Response(
                202, headers={"Location": f"/upload/{sid}?state=a%2Fb", "Range": f"0-{len(data) - 1}"}
            )
        if request.method == "GET":
            return httpx.Response(204, headers={"Range": f"0-{max(len(data) - 1, 0)}"})
        if request.method == "PUT":
            data += request.read()
            digest = request.url.params["digest"]
            if digests.of_bytes(bytes(data)) != digest:
                return httpx.Response(400, json={"errors": [{"code": "DIGEST_INVALID", "message": "bad"}]})
            self.blobs[digest] = bytes(data)
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        return httpx.Response(405)


def test_chunked_upload_resumes_after_416_from_the_registry_range() -> None:
    server = ScriptedUploads(fail_patch={2})
    data = random_bytes(1000)
    desc = blob(data)
    reads: list[int] = []

    def open_at(offset: int) -> Iterator[bytes]:
        reads.append(offset)
        return opener(data, 100)(offset)

    r = RegistryRepository(make_client(server), "a", upload=UploadOptions(monolithic_max=10, chunk_size=300))
    result = r.push_blob(desc, open_at)
    assert server.blobs[desc.digest] == data
    assert reads == [0, 300, 300, 600, 900]  # the refused chunk is resent from the registry's offset
    assert "GET /upload/s0?state=a%2Fb" in server.requests
    assert result.bytes_sent == 1300


def test_chunk_size_honours_oci_chunk_min_length() -> None:
    server = ScriptedUploads(min_chunk=500)
    data = random_bytes(1000)
    r = RegistryRepository(make_client(server), "a", upload=UploadOptions(monolithic_max=10, chunk_size=100))
    r.push_blob(blob(data), opener(data))
    assert server.patches == 2


def test_monolithic_put_sends_explicit_length_and_keeps_location_query() -> None:
    server = ScriptedUploads()
    data = random_bytes(5000)
    lengths: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            lengths.append(request.headers.get("Content-Length"))
            assert request.headers.get("Transfer-Encoding") is None
        return server(request)

    RegistryRepository(make_client(handler), "a").push_blob(blob(data), opener(data))
    assert lengths == ["5000"]
    put = next(x for x in server.requests if x.startswith("PUT"))
    assert put.startswith("PUT /upload/s0?state=a%2Fb&digest=sha256%3A")


def test_referrers_api_is_used_when_present() -> None:
    a = Descriptor(mediatypes.OCI_MANIFEST, digests.of_bytes(b"a"), 1, artifact_type="x/a")
    b = Descriptor(mediatypes.OCI_MANIFEST, digests.of_bytes(b"b"), 1, artifact_type="x/b")
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": [a.to_json(), b.to_json()]}
    ).encode()
    paths: list[str] = []
    subject = digests.of_bytes(b"s")
    referrer = _manifest_with_subject(subject)

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(f"{request.method} {request.url.path}")
        if request.method == "PUT":
            return httpx.Response(201, headers={"Docker-Content-Digest": referrer.digest})
        return httpx.Response(200, content=index, headers={"Content-Type": mediatypes.OCI_INDEX})

    r = RegistryRepository(make_client(handler), "a")
    assert [d.digest for d in r.referrers(subject, artifact_type="x/b")] == [b.digest]
    assert paths == [f"GET /v2/a/referrers/{subject}"]
    # The registry indexes a manifest with a subject itself: the write touches no fallback tag.
    r.put_manifest(referrer.digest, referrer)
    assert paths == [f"GET /v2/a/referrers/{subject}", f"PUT /v2/a/manifests/{referrer.digest}"]


def _manifest_with_subject(subject: str) -> RawManifest:
    obj = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "artifactType": "x/a",
        "config": {"mediaType": mediatypes.OCI_EMPTY, "digest": digests.of_bytes(b"{}"), "size": 2},
        "layers": [],
        "subject": {"mediaType": mediatypes.OCI_INDEX, "digest": subject, "size": 1},
    }
    raw = json.dumps(obj).encode()
    return RawManifest(raw, mediatypes.OCI_MANIFEST, digests.of_bytes(raw))


def test_delete_tag_refused_up_front_when_deletes_are_disabled() -> None:
    manifest = b'{"schemaVersion":2}'
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        if request.method == "HEAD":
            return httpx.Response(
                200, headers={"Docker-Content-Digest": digests.of_bytes(manifest), "Content-Type": "x"}
            )
        return httpx.Response(405, json={"errors": [{"code": "UNSUPPORTED", "message": "unsupported"}]})

    with pytest.raises(RegistryError, match="does not allow deletes"):
        RegistryRepository(make_client(handler), "a").delete_tag("prod")
    assert seen == ["HEAD", "DELETE"]  # nothing was PUT: the tag is untouched


def test_expired_token_is_fetched_again() -> None:
    from modelpack.registry.dockerconfig import Credential

    now = [0.0]
    token_calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            token_calls.append(1)
            return httpx.Response(200, json={"token": f"t{len(token_calls)}", "expires_in": 60})
        if request.headers.get("authorization") == f"Bearer t{len(token_calls)}":
            return httpx.Response(200, json={"tags": []})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://registry.test/token"'})

    client = RegistryClient(
        HOST,
        credentials=lambda _: Credential("u", "p"),
        transport=httpx.MockTransport(handler),
        clock=lambda: now[0],
    )
    repo = RegistryRepository(client, "a")
    repo.list_tags()
    now[0] = 30.0
    repo.list_tags()
    assert len(token_calls) == 1  # still valid: reused
    now[0] = 100.0
    repo.list_tags()
    assert len(token_calls) == 2  # expired: fetched before sending, no 401 round trip needed


def test_insufficient_scope_after_a_granted_token_is_a_permission_error() -> None:
    from modelpack.registry.dockerconfig import Credential

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"token": "read-only"})
        return httpx.Response(
            401,
            headers={
                "WWW-Authenticate": 'Bearer realm="https://registry.test/token",service="s",'
                'scope="repository:a:pull,push",error="insufficient_scope"'
            },
        )

    client = RegistryClient(
        HOST, credentials=lambda _: Credential("u", "p"), transport=httpx.MockTransport(handler)
    )
    with pytest.raises(AuthError, match=r"^registry\.test denied pull,push on a to the logged-in user"):
        RegistryRepository(client, "a").put_manifest("v1", RawManifest(b"{}", mediatypes.OCI_MANIFEST, ""))
    forbidden = RegistryClient(
        HOST,
        credentials=lambda _: Credential("u", "p"),
        transport=httpx.MockTransport(lambda r: httpx.Response(403)),
    )
    with pytest.raises(AuthError, match="denied pull on a"):
        RegistryRepository(forbidden, "a").list_tags()


def test_monolithic_put_answered_503_restarts_with_a_new_session() -> None:
    server = ScriptedUploads()
    puts = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and not puts:
            puts.append(request.read())
            return httpx.Response(503)
        return server(request)

    sleeps: list[float] = []
    data = random_bytes(2000)
    result = RegistryRepository(make_client(handler, sleeps), "a").push_blob(blob(data), opener(data))
    assert server.blobs[blob(data).digest] == data
    assert result.bytes_sent == 4000 and len(server.sessions) == 2 and len(sleeps) == 1


def test_unusable_ca_file_is_an_input_error(tmp_path: Path) -> None:
    from modelpack.errors import InputError

    with pytest.raises(InputError, match=r"missing\.pem cannot be used"):
        RegistryClient(HOST, ca_file=tmp_path / "missing.pem")
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(InputError, match=r"bad\.pem cannot be used"):
        RegistryClient(HOST, ca_file=tmp_path / "bad.pem")
