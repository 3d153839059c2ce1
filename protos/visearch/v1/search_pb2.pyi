from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CropBox(_message.Message):
    __slots__ = ("left", "top", "right", "bottom")
    LEFT_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    BOTTOM_FIELD_NUMBER: _ClassVar[int]
    left: int
    top: int
    right: int
    bottom: int
    def __init__(self, left: _Optional[int] = ..., top: _Optional[int] = ..., right: _Optional[int] = ..., bottom: _Optional[int] = ...) -> None: ...

class ImageQuery(_message.Message):
    __slots__ = ("data", "crop")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    crop: CropBox
    def __init__(self, data: _Optional[bytes] = ..., crop: _Optional[_Union[CropBox, _Mapping]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("image", "text", "embedding", "k", "nprobe", "refine_factor", "like_id", "like_key", "include_self", "filter", "exclude_ids", "exclude_keys", "min_score", "collapse", "collapse_threshold", "offset", "page_token", "fields")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    NPROBE_FIELD_NUMBER: _ClassVar[int]
    REFINE_FACTOR_FIELD_NUMBER: _ClassVar[int]
    LIKE_ID_FIELD_NUMBER: _ClassVar[int]
    LIKE_KEY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SELF_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_IDS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_KEYS_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    COLLAPSE_FIELD_NUMBER: _ClassVar[int]
    COLLAPSE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    image: ImageQuery
    text: str
    embedding: Embedding
    k: int
    nprobe: int
    refine_factor: int
    like_id: int
    like_key: str
    include_self: bool
    filter: str
    exclude_ids: _containers.RepeatedScalarFieldContainer[int]
    exclude_keys: _containers.RepeatedScalarFieldContainer[str]
    min_score: float
    collapse: bool
    collapse_threshold: float
    offset: int
    page_token: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, image: _Optional[_Union[ImageQuery, _Mapping]] = ..., text: _Optional[str] = ..., embedding: _Optional[_Union[Embedding, _Mapping]] = ..., k: _Optional[int] = ..., nprobe: _Optional[int] = ..., refine_factor: _Optional[int] = ..., like_id: _Optional[int] = ..., like_key: _Optional[str] = ..., include_self: _Optional[bool] = ..., filter: _Optional[str] = ..., exclude_ids: _Optional[_Iterable[int]] = ..., exclude_keys: _Optional[_Iterable[str]] = ..., min_score: _Optional[float] = ..., collapse: _Optional[bool] = ..., collapse_threshold: _Optional[float] = ..., offset: _Optional[int] = ..., page_token: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("id", "path", "score", "collapsed", "collapsed_ids", "fields")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    COLLAPSED_FIELD_NUMBER: _ClassVar[int]
    COLLAPSED_IDS_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    id: int
    path: str
    score: float
    collapsed: int
    collapsed_ids: _containers.RepeatedScalarFieldContainer[int]
    fields: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[int] = ..., path: _Optional[str] = ..., score: _Optional[float] = ..., collapsed: _Optional[int] = ..., collapsed_ids: _Optional[_Iterable[int]] = ..., fields: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("decode_ms", "embed_ms", "search_ms", "total_ms")
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    EMBED_MS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    embed_ms: float
    search_ms: float
    total_ms: float
    def __init__(self, decode_ms: _Optional[float] = ..., embed_ms: _Optional[float] = ..., search_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "timings", "index_version", "next_page_token", "version_changed", "strategy", "matched", "query_id")
    HITS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    VERSION_CHANGED_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    timings: Timings
    index_version: int
    next_page_token: str
    version_changed: bool
    strategy: str
    matched: int
    query_id: str
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., index_version: _Optional[int] = ..., next_page_token: _Optional[str] = ..., version_changed: _Optional[bool] = ..., strategy: _Optional[str] = ..., matched: _Optional[int] = ..., query_id: _Optional[str] = ...) -> None: ...

class SearchBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SearchRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[SearchRequest, _Mapping]]] = ...) -> None: ...

class QueryError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class SearchBatchResult(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: SearchResponse
    error: QueryError
    def __init__(self, response: _Optional[_Union[SearchResponse, _Mapping]] = ..., error: _Optional[_Union[QueryError, _Mapping]] = ...) -> None: ...

class SearchBatchResponse(_message.Message):
    __slots__ = ("results", "index_version")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SearchBatchResult]
    index_version: int
    def __init__(self, results: _Optional[_Iterable[_Union[SearchBatchResult, _Mapping]]] = ..., index_version: _Optional[int] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("model", "pretrained", "untrained", "weights_sha256", "dim", "vector_count", "index_spec", "exact", "default_nprobe", "refine_factor", "build_time", "format_version", "index_version", "device", "max_k", "accepts_images_and_text", "loaded_at", "refused_version", "refused_reason", "writable", "index_advice", "shards", "target_recall", "tuned_recall", "tuned_k", "tune_queries", "code_bytes", "rerank_bytes", "rerank_store", "pid", "process_index", "processes", "tuned_vector_count")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PRETRAINED_FIELD_NUMBER: _ClassVar[int]
    UNTRAINED_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    VECTOR_COUNT_FIELD_NUMBER: _ClassVar[int]
    INDEX_SPEC_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_NPROBE_FIELD_NUMBER: _ClassVar[int]
    REFINE_FACTOR_FIELD_NUMBER: _ClassVar[int]
    BUILD_TIME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    MAX_K_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_IMAGES_AND_TEXT_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    REFUSED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REFUSED_REASON_FIELD_NUMBER: _ClassVar[int]
    WRITABLE_FIELD_NUMBER: _ClassVar[int]
    INDEX_ADVICE_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    TARGET_RECALL_FIELD_NUMBER: _ClassVar[int]
    TUNED_RECALL_FIELD_NUMBER: _ClassVar[int]
    TUNED_K_FIELD_NUMBER: _ClassVar[int]
    TUNE_QUERIES_FIELD_NUMBER: _ClassVar[int]
    CODE_BYTES_FIELD_NUMBER: _ClassVar[int]
    RERANK_BYTES_FIELD_NUMBER: _ClassVar[int]
    RERANK_STORE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    PROCESS_INDEX_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    TUNED_VECTOR_COUNT_FIELD_NUMBER: _ClassVar[int]
    model: str
    pretrained: str
    untrained: bool
    weights_sha256: str
    dim: int
    vector_count: int
    index_spec: str
    exact: bool
    default_nprobe: int
    refine_factor: int
    build_time: str
    format_version: int
    index_version: int
    device: str
    max_k: int
    accepts_images_and_text: bool
    loaded_at: str
    refused_version: int
    refused_reason: str
    writable: bool
    index_advice: str
    shards: _containers.RepeatedCompositeFieldContainer[ShardInfo]
    target_recall: float
    tuned_recall: float
    tuned_k: int
    tune_queries: int
    code_bytes: int
    rerank_bytes: int
    rerank_store: str
    pid: int
    process_index: int
    processes: int
    tuned_vector_count: int
    def __init__(self, model: _Optional[str] = ..., pretrained: _Optional[str] = ..., untrained: _Optional[bool] = ..., weights_sha256: _Optional[str] = ..., dim: _Optional[int] = ..., vector_count: _Optional[int] = ..., index_spec: _Optional[str] = ..., exact: _Optional[bool] = ..., default_nprobe: _Optional[int] = ..., refine_factor: _Optional[int] = ..., build_time: _Optional[str] = ..., format_version: _Optional[int] = ..., index_version: _Optional[int] = ..., device: _Optional[str] = ..., max_k: _Optional[int] = ..., accepts_images_and_text: _Optional[bool] = ..., loaded_at: _Optional[str] = ..., refused_version: _Optional[int] = ..., refused_reason: _Optional[str] = ..., writable: _Optional[bool] = ..., index_advice: _Optional[str] = ..., shards: _Optional[_Iterable[_Union[ShardInfo, _Mapping]]] = ..., target_recall: _Optional[float] = ..., tuned_recall: _Optional[float] = ..., tuned_k: _Optional[int] = ..., tune_queries: _Optional[int] = ..., code_bytes: _Optional[int] = ..., rerank_bytes: _Optional[int] = ..., rerank_store: _Optional[str] = ..., pid: _Optional[int] = ..., process_index: _Optional[int] = ..., processes: _Optional[int] = ..., tuned_vector_count: _Optional[int] = ...) -> None: ...

class ShardInfo(_message.Message):
    __slots__ = ("path", "index_version", "vector_count", "index_spec", "id_base", "loaded_at", "refused_version", "refused_reason")
    PATH_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    VECTOR_COUNT_FIELD_NUMBER: _ClassVar[int]
    INDEX_SPEC_FIELD_NUMBER: _ClassVar[int]
    ID_BASE_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    REFUSED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REFUSED_REASON_FIELD_NUMBER: _ClassVar[int]
    path: str
    index_version: int
    vector_count: int
    index_spec: str
    id_base: int
    loaded_at: str
    refused_version: int
    refused_reason: str
    def __init__(self, path: _Optional[str] = ..., index_version: _Optional[int] = ..., vector_count: _Optional[int] = ..., index_spec: _Optional[str] = ..., id_base: _Optional[int] = ..., loaded_at: _Optional[str] = ..., refused_version: _Optional[int] = ..., refused_reason: _Optional[str] = ...) -> None: ...

class UpsertItem(_message.Message):
    __slots__ = ("key", "image", "embedding", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KEY_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    key: str
    image: bytes
    embedding: Embedding
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, key: _Optional[str] = ..., image: _Optional[bytes] = ..., embedding: _Optional[_Union[Embedding, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("items", "allow_partial")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PARTIAL_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[UpsertItem]
    allow_partial: bool
    def __init__(self, items: _Optional[_Iterable[_Union[UpsertItem, _Mapping]]] = ..., allow_partial: _Optional[bool] = ...) -> None: ...

class UpsertResult(_message.Message):
    __slots__ = ("key", "id", "error")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    key: str
    id: int
    error: QueryError
    def __init__(self, key: _Optional[str] = ..., id: _Optional[int] = ..., error: _Optional[_Union[QueryError, _Mapping]] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("results", "index_version")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[UpsertResult]
    index_version: int
    def __init__(self, results: _Optional[_Iterable[_Union[UpsertResult, _Mapping]]] = ..., index_version: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("keys", "ids")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., ids: _Optional[_Iterable[int]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("removed", "unknown_keys", "unknown_ids")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_KEYS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_IDS_FIELD_NUMBER: _ClassVar[int]
    removed: int
    unknown_keys: _containers.RepeatedScalarFieldContainer[str]
    unknown_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, removed: _Optional[int] = ..., unknown_keys: _Optional[_Iterable[str]] = ..., unknown_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class ThumbnailRequest(_message.Message):
    __slots__ = ("id", "size")
    ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    id: int
    size: int
    def __init__(self, id: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class ThumbnailResponse(_message.Message):
    __slots__ = ("jpeg", "path")
    JPEG_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    jpeg: bytes
    path: str
    def __init__(self, jpeg: _Optional[bytes] = ..., path: _Optional[str] = ...) -> None: ...

class FeedbackEvent(_message.Message):
    __slots__ = ("kind", "hit_id", "rank", "dwell_ms")
    KIND_FIELD_NUMBER: _ClassVar[int]
    HIT_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    DWELL_MS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    hit_id: int
    rank: int
    dwell_ms: int
    def __init__(self, kind: _Optional[str] = ..., hit_id: _Optional[int] = ..., rank: _Optional[int] = ..., dwell_ms: _Optional[int] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("query_id", "events")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    events: _containers.RepeatedCompositeFieldContainer[FeedbackEvent]
    def __init__(self, query_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[FeedbackEvent, _Mapping]]] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("recorded",)
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    recorded: int
    def __init__(self, recorded: _Optional[int] = ...) -> None: ...
