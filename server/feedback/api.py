"""Query ids on every answer, and the Feedback RPC that refers to them.

Around Search and SearchBatch, the call path (server.callpath) gives each answer a
``query_id`` and, with a log, writes one ``query`` entry: the query's kind (image, text,
vector, like), the index version and the returned ids, never image bytes, and
the text only with ``--log-query-text``. Feedback events (impression, click,
dwell) are written as their own entries naming the query id, so a reader joins
them; nothing on the search path waits for the disk (server.feedback.log).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from visearch.v1 import search_pb2

from common.errors import VisearchError
from index.ann.query import InvalidQueryError
from server.feedback.config import FeedbackConfig
from server.feedback.log import FeedbackLog
from server.feedback.stats import ClickStats

EVENT_KINDS = ("impression", "click", "dwell")
MAX_EVENTS = 1000  # per Feedback call
SEARCH_METHODS = frozenset({"/visearch.v1.VisualSearch/Search",
                            "/visearch.v1.VisualSearch/SearchBatch"})


class FeedbackOffError(VisearchError):
    """The server was started without --feedback-log."""


class InvalidFeedbackError(InvalidQueryError):
    """A Feedback call the log cannot use (answered INVALID_ARGUMENT)."""


def query_kind(request: search_pb2.SearchRequest) -> str:
    if request.HasField("image"):
        return "image"
    if request.HasField("text"):
        return "text"
    if request.HasField("embedding"):
        return "vector"
    return "like"


class FeedbackRecorder:
    """The log and the click statistics of one server."""

    def __init__(self, config: FeedbackConfig):
        self.config = config
        self.log = FeedbackLog(config.folder, max_bytes=config.max_bytes)
        self.stats = ClickStats(config.window_seconds)

    def query(self, query_id: str, request: search_pb2.SearchRequest,
              response: search_pb2.SearchResponse) -> None:
        entry: dict[str, Any] = {
            "type": "query", "time": time.time(), "query_id": query_id,
            "kind": query_kind(request), "index_version": response.index_version,
            "ids": [hit.id for hit in response.hits]}
        if request.HasField("like_id"):  # the query image: a positive for what is clicked
            entry["like_id"] = request.like_id
        elif request.HasField("like_key"):
            entry["like_key"] = request.like_key
        if self.config.log_query_text and request.HasField("text"):
            entry["text"] = request.text
        self.log.record(entry)

    def feedback(self, request: search_pb2.FeedbackRequest) -> int:
        """Check every event first, then record them all: a bad call records nothing."""
        if not request.query_id:
            raise InvalidFeedbackError("feedback needs the query_id of a SearchResponse")
        if len(request.events) > MAX_EVENTS:
            raise InvalidFeedbackError(f"at most {MAX_EVENTS} events per Feedback call")
        for event in request.events:
            if event.kind not in EVENT_KINDS:
                raise InvalidFeedbackError(
                    f"event kind {event.kind!r}: use one of {', '.join(EVENT_KINDS)}")
            if event.kind != "impression" and event.rank < 1:
                raise InvalidFeedbackError(f"a {event.kind} event needs the hit's rank (1 = "
                                           "first)")
        now = time.time()
        for event in request.events:
            entry: dict[str, Any] = {"type": event.kind, "time": now,
                                     "query_id": request.query_id}
            if event.kind != "impression":
                entry.update(hit_id=event.hit_id, rank=event.rank)
            if event.kind == "dwell":
                entry["dwell_ms"] = event.dwell_ms
            self.log.record(entry)
            if event.kind == "impression":
                self.stats.shown(request.query_id)
            elif event.kind == "click":
                self.stats.clicked(request.query_id, event.rank)
        return len(request.events)

    def close(self) -> None:
        self.log.close()


def handle(recorder: FeedbackRecorder | None,
           request: search_pb2.FeedbackRequest) -> search_pb2.FeedbackResponse:
    if recorder is None:
        raise FeedbackOffError("this server keeps no feedback: start it with --feedback-log")
    return search_pb2.FeedbackResponse(recorded=recorder.feedback(request))


def stamp_query_ids(request: Any, response: Any, recorder: FeedbackRecorder | None) -> None:
    """A new query id on each answer of a Search or SearchBatch response (server.callpath
    calls this for every answered search), and the query logged when a recorder is on."""
    if isinstance(response, search_pb2.SearchResponse):
        pairs = [(request, response)]
    else:
        pairs = [(q, r.response) for q, r in zip(request.requests, response.results,
                                                 strict=True) if r.HasField("response")]
    for query, answer in pairs:
        answer.query_id = uuid.uuid4().hex
        if recorder is not None:
            recorder.query(answer.query_id, query, answer)
