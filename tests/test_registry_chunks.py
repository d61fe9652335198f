"""Chunk sizes: big chunks from re-readable sources, memory-bounded chunks from one-shot streams."""

from __future__ import annotations

from pathlib import Path

from support.registry_helpers import Requests, blob, client_for, random_bytes

from modelpack.oci import mediatypes
from modelpack.registry import RegistryRepository, UploadOptions
from modelpack.store.layout import LayoutStore

MIB = 1 << 20


def test_a_layout_file_goes_up_in_big_chunks_a_stream_in_bounded_ones(registry, repo, tmp_path: Path) -> None:
    data = random_bytes(20 * MIB)
    layout = LayoutStore(tmp_path / "layout")
    desc = layout.put_blob_bytes(data, mediatypes.OCI_LAYER_TAR)
    options = UploadOptions(monolithic_max=MIB)  # defaults otherwise: 20 MiB is chunked
    seen = Requests()
    with client_for(registry.host, event_hooks={"request": [seen]}) as client:
        from_file = RegistryRepository(client, repo, upload=options)
        assert from_file.copy_blob_from([layout], desc).how == "upload"
        assert seen.count("PATCH") == 1  # one chunk: the file is re-read from any offset on resume

        seen.seen.clear()
        from_stream = RegistryRepository(client, repo + "-stream", upload=options)
        with layout.read_blob(desc) as chunks:
            from_stream.write_blob(desc, chunks)
        assert seen.count("PATCH") == 2  # 16 MiB + 4 MiB: a stream keeps only its chunk in flight
        with from_stream.read_blob(blob(data)) as chunks:
            assert b"".join(chunks) == data
