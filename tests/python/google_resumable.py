"""Google's own resumable-upload and chunked-download client, unpatched,
against a real ferry-server: a 20 MiB upload in 1 MiB chunks, interrupted
and recovered with a fresh upload object, then compared by sha256 on a
chunked download. Usage: google_resumable.py URL TOKEN; exits non-zero on
any failure and prints what it checked."""

import hashlib
import io
import os
import sys

import requests
from google.resumable_media.requests import ChunkedDownload, Download, ResumableUpload

MIB = 1024 * 1024


def main(url: str, token: str) -> None:
    transport = requests.Session()
    transport.headers["Authorization"] = f"Bearer {token}"
    data = os.urandom(20 * MIB + 12345)
    want = hashlib.sha256(data).hexdigest()
    upload_url = f"{url}/files/upload?uploadType=resumable"
    content_type = "application/octet-stream"
    stream = io.BytesIO(data)

    # Start as Google's docs show: metadata with a name, size from the stream.
    first = ResumableUpload(upload_url, MIB)
    first.initiate(transport, stream, {"name": "google/big.bin"}, content_type)
    session = first.resumable_url
    assert session.startswith(f"{url}/files/upload?"), session
    for _ in range(7):
        first.transmit_next_chunk(transport)
    assert first.bytes_uploaded == 7 * MIB, first.bytes_uploaded

    # The process "dies": a fresh object, knowing only the session URL,
    # asks the server where it got to (`bytes */*`) and goes on.
    stream = io.BytesIO(data)
    fresh = ResumableUpload(upload_url, MIB)
    fresh._resumable_url = session
    fresh._stream = stream
    fresh._content_type = content_type
    fresh._total_bytes = len(data)
    fresh._invalid = True
    fresh.recover(transport)
    assert fresh.bytes_uploaded == 7 * MIB, fresh.bytes_uploaded
    assert stream.tell() == 7 * MIB
    chunks = 0
    while not fresh.finished:
        response = fresh.transmit_next_chunk(transport)
        chunks += 1
    assert response.status_code == 200, response.status_code
    entry = response.json()
    assert entry["path"] == "google/big.bin" and entry["size"] == len(data), entry

    # A client that lost that last answer asks again and learns it is done.
    status = transport.put(session, headers={"Content-Range": "bytes */*"})
    assert status.status_code == 200 and status.json()["rev"] == entry["rev"], status.text

    # Chunked download (Range requests, 3 MiB at a time), then a plain one.
    media_url = f"{url}/files/download?path=google/big.bin"
    out = io.BytesIO()
    download = ChunkedDownload(media_url, 3 * MIB, out)
    while not download.finished:
        download.consume_next_chunk(transport)
    got = hashlib.sha256(out.getvalue()).hexdigest()
    assert got == want, (got, want)
    assert download.total_bytes == len(data), download.total_bytes
    whole = io.BytesIO()
    Download(media_url, stream=whole).consume(transport)
    assert hashlib.sha256(whole.getvalue()).hexdigest() == want

    print(f"uploaded {len(data)} bytes: 7 chunks, recovered with a fresh object, {chunks} more; sha256 {want[:16]} matches")
    print(f"chunked download: {download.bytes_downloaded} bytes in 3 MiB ranges; plain download matches")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
