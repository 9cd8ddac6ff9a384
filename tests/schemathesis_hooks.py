"""schemathesis hooks for the contract run (tests/tests/blackbox/contract.rs).

Uploads (`PUT /v1/blobs/{key}`) are raw video bytes; schemathesis ships no
serializer for `video/*`, so the generated body is sent as bytes, as for
`application/octet-stream`.
"""

import schemathesis
from schemathesis.transport.serialization import serialize_binary


@schemathesis.serializer("video/mp4", "video/quicktime", "video/webm")
def video_bytes(ctx, value):
    return {"data": serialize_binary(value)}
