"""Thin adapters over the Elasticsearch 8 and OpenSearch clients.

Both expose the same calls (`SearchApi`) and turn every client exception into
the engine's own tree (errors.py), so the paging code never sees a client
type. The clients' own retries are off: `retry.with_retry` owns retrying.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any, Callable, Protocol, Sequence, TypeVar, cast

import elastic_transport
import elasticsearch
import opensearchpy

from config import Settings
from rtarf_sync.engine.fastjson import ElasticsearchJson, OpenSearchJson, typed_answers
from rtarf_sync.engine.hits import PAGE_DECODER, Answer
from rtarf_sync.engine.errors import ContextExpired, PitUnsupported, SourceError, TooManyBuckets, TransientError
from rtarf_sync.engine.source.connection import elasticsearch_options, opensearch_options
from rtarf_sync.engine.source.filters import filtered

T = TypeVar("T")
Json = dict[str, Any]
log = logging.getLogger("rtarf_sync.clients")  # the name log filters know
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
_EXPIRED_TYPES = ("search_context_missing_exception", "search_context_expired_exception")
# A full thread pool or indexing-pressure limit: Elasticsearch names it with its es_ prefix, OpenSearch without.
_REJECTED_TYPES = ("es_rejected_execution_exception", "rejected_execution_exception")


class SearchApi(Protocol):
    """The calls the sync makes, whatever the engine."""

    kind: str

    def info(self) -> Json: ...
    def open_pit(self, index: str, keep_alive: str) -> str: ...
    def close_pit(self, pit_id: str) -> None: ...
    def search(self, body: Json, index: str | None = None, scroll: str | None = None) -> Json: ...
    def search_hits(self, body: Json, index: str | None = None, scroll: str | None = None) -> Answer: ...
    def scroll_hits(self, scroll_id: str, keep_alive: str) -> Answer: ...
    def aggregate(self, index: str, query: Json, aggs: Json) -> Json: ...
    def scroll(self, scroll_id: str, keep_alive: str) -> Json: ...
    def clear_scroll(self, scroll_id: str) -> None: ...
    def bulk(self, ndjson: str) -> Json: ...
    def resolve_indices(self, expression: str) -> dict[str, bool]: ...
    def refresh(self, index: str) -> None: ...
    def find_ids(
        self, index: str, ids: Sequence[str], query: Json | None = None, source: Json | None = None
    ) -> Json: ...
    def close(self) -> None: ...


def ids_body(ids: Sequence[str], query: Json | None = None, source: Json | None = None) -> Json:
    """A search for documents by `_id`, with the versions the sink's guard needs.

    `query` (the pipeline's filter) must match too; `source` selects the `_source` fields.
    """
    body: Json = {
        "query": filtered(query, {"ids": {"values": list(ids)}}),
        "size": len(ids),
        "seq_no_primary_term": True,
        "track_total_hits": False,
    }
    if source is not None:
        body["_source"] = source
    return body


def _error_chain(body: Any) -> list[dict[str, Any]]:
    """An engine error body's root causes, then its error, then the `caused_by` chain beneath that."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return []
    chain = [cause for cause in error.get("root_cause") or [] if isinstance(cause, dict)]
    chain.append(error)
    cause = error.get("caused_by")
    while isinstance(cause, dict) and len(chain) < 20:
        chain.append(cause)
        cause = cause.get("caused_by")
    return chain


def _error_type(body: Any) -> str:
    """The innermost error type of an engine error body (its first root cause's), or an empty string."""
    return next((str(error["type"]) for error in _error_chain(body) if error.get("type")), "")


def _error_reason(body: Any) -> str:
    """The first reason an engine error body gives: a root cause's, else its own, else a deeper cause's."""
    chain = _error_chain(body)
    if not chain:
        return str(body)[:300]
    return next((str(error["reason"]) for error in chain if error.get("reason")), "")


def proxy_refused(what: str) -> SourceError:
    """The proxy wants other credentials: retrying cannot fix them, so abort at once, saying where they are set."""
    return SourceError(
        f"{what}: HTTP 407 Proxy Authentication Required: the proxy refused the user and password of RTARF_ES_PROXY"
    )


def _connection_failed(what: str, kind: str, message: str) -> Exception:
    """A request that got no answer from the engine: transient, unless a proxy refused to open the tunnel."""
    if "407 Proxy Authentication Required" in message:
        return proxy_refused(what)
    return TransientError(f"{what}: {kind}: {message}")


def classify(status: int | None, body: Any, what: str) -> Exception:
    """Map an engine error answer to the exception the caller should act on."""
    if status == 407:
        return proxy_refused(what)
    kind, reason = _error_type(body), _error_reason(body)
    text = f"{what}: HTTP {status} {kind or ''} {reason}".strip()
    if kind in _EXPIRED_TYPES or "search_context_missing" in str(body):
        return ContextExpired(text)
    if any(error.get("type") == "too_many_buckets_exception" for error in _error_chain(body)):
        return TooManyBuckets(text)  # asking again cannot help; asking for fewer buckets can
    if status in _TRANSIENT_STATUS or kind in _REJECTED_TYPES:
        return TransientError(text)
    return SourceError(text)


_CLIENT_CERT_REFUSALS = ("alert certificate required", "alert unknown ca", "alert bad certificate", "EOF occurred")


def tls_refused(what: str, error: BaseException) -> SourceError:
    """A TLS handshake that failed: retrying cannot fix a certificate, so abort at once, saying which to check."""
    causes: list[BaseException] = [error, *getattr(error, "errors", ())]
    while (deeper := causes[-1].__cause__ or causes[-1].__context__) is not None:
        causes.append(deeper)
        if len(causes) > 10:
            break
    text = " ".join(str(cause) for cause in causes)
    found = (
        re.search(r"certificate verify failed: [^()'\"]*", text)
        or re.search(r"\[SSL[^\]]*\][^()'\"]*", text)
        or re.search(r"EOF occurred in violation of protocol", text)
    )
    detail = found.group(0).strip() if found else text[:200]
    if "certificate verify failed" in detail:
        hint = "check RTARF_ES_CA_CERTS (the CA that signed the engine's certificate) or the engine URL"
    elif any(refusal in detail for refusal in _CLIENT_CERT_REFUSALS):
        # The engine hung up or alerted during the handshake: what a server wanting mTLS does.
        hint = "the engine may want a client certificate: check RTARF_ES_CLIENT_CERT and RTARF_ES_CLIENT_KEY"
    else:
        hint = "check RTARF_ES_CA_CERTS, RTARF_ES_CLIENT_CERT and the engine URL"
    return SourceError(f"{what}: TLS handshake with the engine failed ({detail}); {hint}")


def _open_pit(call: Callable[[], Json]) -> Json:
    """Open a point in time; an engine that has no such endpoint raises PitUnsupported."""
    try:
        return call()
    except SourceError as error:
        if "no handler found" in str(error) or "HTTP 405" in str(error):
            raise PitUnsupported(str(error)) from None
        raise


# Closed indices are listed too: a caller must see them to refuse them.
_RESOLVE_OPTIONS: Json = {"expand_wildcards": "open,closed", "ignore_unavailable": True, "allow_no_indices": True}
_RESOLVE_BATCH = 100  # index names per state lookup, to keep the URL short


class _Resolving:
    """`resolve_indices`, whichever client sends its two calls."""

    def _mappings(self, expression: str) -> Json:
        raise NotImplementedError

    def _resolve(self, expression: str) -> Json:
        raise NotImplementedError

    def resolve_indices(self, expression: str) -> dict[str, bool]:
        """The concrete indices `expression` names now, each mapped to whether it is open; missing ones are left out.

        The names come from a mapping request, which resolves wildcards, aliases and exclusions exactly
        as a search does (`_resolve/index` keeps a wildcard-matched alias whole, even with an exclusion);
        their states from `_resolve/index`, asked by name.
        """
        names = sorted(self._mappings(expression))
        states: dict[str, bool] = {}
        for start in range(0, len(names), _RESOLVE_BATCH):
            answer = self._resolve(",".join(names[start : start + _RESOLVE_BATCH]))
            states.update(
                (str(entry["name"]), "closed" not in (entry.get("attributes") or []))
                for entry in answer.get("indices") or []
            )
        return {name: states[name] for name in names if name in states}  # one deleted meanwhile is gone


class _TypedPages(_Resolving):
    """The reader's requests: answers decoded into typed pages, each `_source` kept raw (hits.py)."""

    def search(self, body: Json, index: str | None = None, scroll: str | None = None) -> Json:
        raise NotImplementedError

    def scroll(self, scroll_id: str, keep_alive: str) -> Json:
        raise NotImplementedError

    def search_hits(self, body: Json, index: str | None = None, scroll: str | None = None) -> Answer:
        with typed_answers(PAGE_DECODER):
            return self.search(body, index=index, scroll=scroll)

    def scroll_hits(self, scroll_id: str, keep_alive: str) -> Answer:
        with typed_answers(PAGE_DECODER):
            return self.scroll(scroll_id, keep_alive)


class ElasticsearchApi(_TypedPages):
    """SearchApi over the official elasticsearch 8.x client."""

    kind = "elasticsearch"

    def __init__(self, settings: Settings) -> None:
        options = elasticsearch_options(settings)
        json_serializer = ElasticsearchJson()
        self.client = elasticsearch.Elasticsearch(
            list(settings.es_urls),
            serializers={
                "application/json": json_serializer,
                "application/vnd.elasticsearch+json": json_serializer,
            },
            **options,
        )

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            response = call()
        except elasticsearch.ApiError as error:
            raise classify(error.meta.status, error.body, what) from None
        except elastic_transport.TlsError as error:
            raise tls_refused(what, error) from None
        except (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout) as error:
            raise _connection_failed(what, type(error).__name__, error.message) from None
        except elastic_transport.TransportError as error:
            raise TransientError(f"{what}: {type(error).__name__}: {error.message}") from None
        return getattr(response, "body", response)

    def info(self) -> Json:
        return cast(Json, self._call("GET /", self.client.info))

    def open_pit(self, index: str, keep_alive: str) -> str:
        answer = _open_pit(
            lambda: self._call(
                "open point in time",
                lambda: self.client.open_point_in_time(index=index, keep_alive=keep_alive, ignore_unavailable=False),
            )
        )
        return str(answer["id"])

    def close_pit(self, pit_id: str) -> None:
        self._call("close point in time", lambda: self.client.close_point_in_time(id=pit_id))

    def search(self, body: Json, index: str | None = None, scroll: str | None = None) -> Json:
        return cast(Json, self._call("search", lambda: self.client.search(index=index, scroll=scroll, **body)))

    def aggregate(self, index: str, query: Json, aggs: Json) -> Json:
        """Aggregations only (no hits, no total): the whole answer, so shard failures can be checked."""
        return cast(
            Json,
            self._call(
                "aggregate",
                lambda: self.client.search(index=index, size=0, track_total_hits=False, query=query, aggs=aggs),
            ),
        )

    def scroll(self, scroll_id: str, keep_alive: str) -> Json:
        return cast(Json, self._call("scroll", lambda: self.client.scroll(scroll_id=scroll_id, scroll=keep_alive)))

    def clear_scroll(self, scroll_id: str) -> None:
        self._call("clear scroll", lambda: self.client.clear_scroll(scroll_id=scroll_id))

    def bulk(self, ndjson: str) -> Json:
        return cast(Json, self._call("bulk", lambda: self.client.bulk(operations=ndjson)))  # type: ignore[arg-type]  # NDJSON text is sent as it is; the hints name lists

    def refresh(self, index: str) -> None:
        """Make every acknowledged document of `index` searchable now."""
        self._call(
            "refresh", lambda: self.client.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
        )

    def _mappings(self, expression: str) -> Json:
        return cast(
            Json,
            self._call("get mappings", lambda: self.client.indices.get_mapping(index=expression, **_RESOLVE_OPTIONS)),
        )

    def _resolve(self, expression: str) -> Json:
        return cast(
            Json,
            self._call(
                "resolve indices", lambda: self.client.indices.resolve_index(name=expression, **_RESOLVE_OPTIONS)
            ),
        )

    def find_ids(self, index: str, ids: Sequence[str], query: Json | None = None, source: Json | None = None) -> Json:
        """The whole answer of a search of `index` by id (a closed or missing index is an error, not "no hits")."""
        body = ids_body(ids, query, source)
        return cast(Json, self._call("search by id", lambda: self.client.search(index=index, **body)))

    def close(self) -> None:
        self.client.close()


class OpenSearchApi(_TypedPages):
    """SearchApi over opensearch-py."""

    kind = "opensearch"

    def __init__(self, settings: Settings) -> None:
        options = opensearch_options(settings)
        self.client = opensearchpy.OpenSearch(list(settings.es_urls), serializer=OpenSearchJson(), **options)

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            with warnings.catch_warnings():
                # Sorting on _id warns about fielddata on every page; the sync knows.
                warnings.simplefilter("ignore", opensearchpy.OpenSearchWarning)
                return call()
        except opensearchpy.SSLError as error:
            raise tls_refused(what, error) from None
        except opensearchpy.ConnectionError as error:
            raise _connection_failed(what, type(error).__name__, f"{error.error} {error.info}") from None
        except opensearchpy.TransportError as error:
            status = error.status_code if isinstance(error.status_code, int) else None
            raise classify(status, error.info, what) from None

    def info(self) -> Json:
        return cast(Json, self._call("GET /", self.client.info))

    def open_pit(self, index: str, keep_alive: str) -> str:
        answer = _open_pit(
            lambda: self._call(
                "open point in time", lambda: self.client.create_pit(index=index, params={"keep_alive": keep_alive})
            )
        )
        return str(answer["pit_id"])

    def close_pit(self, pit_id: str) -> None:
        self._call("close point in time", lambda: self.client.delete_pit(body={"pit_id": [pit_id]}))

    def search(self, body: Json, index: str | None = None, scroll: str | None = None) -> Json:
        params = {"scroll": scroll} if scroll else None
        return cast(Json, self._call("search", lambda: self.client.search(body=body, index=index, params=params)))

    def aggregate(self, index: str, query: Json, aggs: Json) -> Json:
        """Aggregations only (no hits, no total): the whole answer, so shard failures can be checked."""
        body = {"size": 0, "track_total_hits": False, "query": query, "aggs": aggs}
        return cast(Json, self._call("aggregate", lambda: self.client.search(body=body, index=index)))

    def scroll(self, scroll_id: str, keep_alive: str) -> Json:
        return cast(
            Json, self._call("scroll", lambda: self.client.scroll(body={"scroll_id": scroll_id, "scroll": keep_alive}))
        )

    def clear_scroll(self, scroll_id: str) -> None:
        self._call("clear scroll", lambda: self.client.clear_scroll(body={"scroll_id": scroll_id}))

    def bulk(self, ndjson: str) -> Json:
        return cast(Json, self._call("bulk", lambda: self.client.bulk(body=ndjson)))

    def refresh(self, index: str) -> None:
        """Make every acknowledged document of `index` searchable now."""
        self._call(
            "refresh",
            lambda: self.client.indices.refresh(
                index=index, params={"ignore_unavailable": "true", "allow_no_indices": "true"}
            ),
        )

    def _mappings(self, expression: str) -> Json:
        params = {key: str(value).lower() for key, value in _RESOLVE_OPTIONS.items()}
        return cast(
            Json, self._call("get mappings", lambda: self.client.indices.get_mapping(index=expression, params=params))
        )

    def _resolve(self, expression: str) -> Json:
        params = {key: str(value).lower() for key, value in _RESOLVE_OPTIONS.items()}
        return cast(
            Json,
            self._call("resolve indices", lambda: self.client.indices.resolve_index(name=expression, params=params)),
        )

    def find_ids(self, index: str, ids: Sequence[str], query: Json | None = None, source: Json | None = None) -> Json:
        """The whole answer of a search of `index` by id (a closed or missing index is an error, not "no hits")."""
        body = ids_body(ids, query, source)
        return cast(Json, self._call("search by id", lambda: self.client.search(body=body, index=index)))

    def close(self) -> None:
        self.client.close()


def detect_engine(settings: Settings) -> str:
    """Ask `GET /` which engine answers: opensearch or elasticsearch."""
    probe = OpenSearchApi(settings)
    try:
        info = probe.info()
    finally:
        probe.close()
    distribution = str(info.get("version", {}).get("distribution", ""))
    return "opensearch" if distribution == "opensearch" else "elasticsearch"


def build_api(settings: Settings) -> SearchApi:
    """The client adapter the settings ask for, detecting the engine when `auto`."""
    kind = settings.source_engine
    if kind == "auto":
        kind = detect_engine(settings)
    return OpenSearchApi(settings) if kind == "opensearch" else ElasticsearchApi(settings)
