"""Answers are values: the echo builds an `Answer`, and a streamed one is counted
and hashed chunk by chunk as WSGI sends it, then recorded once."""

from __future__ import annotations

import hashlib
from typing import Any

from echo.answer.answer import Answer
from echo.history import MemoryStore, Query
from echo.model.factory import make_request
from echo.observe.recorder import Recorder
from echo.web.echo import RecordedBody


class Chunks:
    """An iterable body that says whether the server closed it."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    def __iter__(self) -> Any:
        return iter(self.chunks)

    def close(self) -> None:
        self.closed = True


def test_an_answer_knows_whether_it_streams() -> None:
    assert not Answer(200, [], b"x").streams
    assert Answer(200, [("Content-Type", "text/plain")], iter([b"x"])).streams
    assert Answer(200, [("Content-Type", "text/plain")]).header("content-type") == "text/plain"


def test_a_streamed_body_is_recorded_as_sent_once_it_is_closed() -> None:
    store = MemoryStore(10)
    recorder = Recorder(store, history=10, keep_body=5, redact=())
    chunks = Chunks([b"abc", b"", b"defgh", b"ij"])
    body = RecordedBody(chunks, recorder, make_request(), 200, (("Content-Type", "text/plain"),), "text/plain",
                        {}, 0.0)
    sent = b"".join(body)
    assert store.list(Query(limit=5)) == []  # nothing recorded before the server closes the body
    body.close()
    body.close()  # a second close records nothing more
    assert chunks.closed
    [kept] = store.list(Query(limit=5))
    assert sent == b"abcdefghij"
    assert kept.response.body_size == len(sent)
    assert kept.response.body_sha256 == hashlib.sha256(sent).hexdigest()
    assert kept.response.body == b"abcde" and kept.response.truncated  # --keep-body of 5


def test_a_stream_the_caller_left_is_recorded_with_what_was_sent() -> None:
    store = MemoryStore(10)
    recorder = Recorder(store, history=10, keep_body=100, redact=())
    body = RecordedBody(Chunks([b"one", b"two", b"three"]), recorder, make_request(), 200, (), "", {}, 0.0)
    first = next(iter(body))
    body.close()
    [kept] = store.list(Query(limit=5))
    assert kept.response.body == first == b"one"
    assert kept.response.body_size == 3 and not kept.response.truncated
