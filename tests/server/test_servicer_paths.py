"""Hit paths cross the gRPC edge as valid UTF-8, whatever bytes name the file."""

from __future__ import annotations

import os

from server.service import Result
from server.servicer import response_to_proto


def test_a_file_name_that_is_not_utf8_is_sent_readably():
    odd = os.fsdecode(b"/photos/caf\xe9.jpg")
    proto = response_to_proto(Result([(3, odd, 0.5), (4, "/photos/café.jpg", 0.4)], 1))
    assert [h.path for h in proto.hits] == ["/photos/caf\\xe9.jpg", "/photos/café.jpg"]
    assert proto.SerializeToString()
