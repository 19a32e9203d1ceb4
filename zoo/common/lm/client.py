"""Black-box language models (teachers, judges, rankers) behind one small protocol.

:class:`ChatModel` is the protocol the papers program against: ``complete(messages, n=...)``
returns the texts of ``n`` choices, and ``name`` says which model answered. It has two
implementations:

- :class:`OpenAIChat`, built on the ``openai`` package, for any OpenAI-compatible endpoint
  (OpenAI, vLLM, llama.cpp, a local gateway) at a configurable ``base_url``. The API key is read
  from an environment variable whose *name* is configured; the key itself is never logged, never
  written to the cache, never shown in ``repr`` or in an error, and not pickled. Requests time out,
  are retried with exponential backoff, and answers are kept in an on-disk cache so that a run can
  be repeated without the endpoint (a cache hit makes no request and needs no key).
- :class:`ChatStandIn`, a deterministic stand-in driven by a ``respond(messages, i)`` function,
  for tests and for embedded worlds that simulate a teacher.

:func:`serve_standin` runs a tiny OpenAI-compatible HTTP server on 127.0.0.1 that answers
``POST /v1/chat/completions`` and ``POST /v1/embeddings`` from the same kind of ``respond``
function, records every request and can fail on purpose, so that :class:`OpenAIChat` is tested
end to end without leaving the machine.

Example::

    with serve_standin(lambda messages, i: f"answer {i}") as url:
        teacher = OpenAIChat("teacher", base_url=url, api_key_env=None, cache=False)
        teacher.complete([{"role": "user", "content": "2+2?"}], n=2)  # ['answer 0', 'answer 1']
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import logging
import math
import os
import struct
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, runtime_checkable

from zoo.core.errors import ZooError
from zoo.core.io import atomic_write_text, cache_root

log = logging.getLogger(__name__)

Messages = list[dict[str, Any]]
Respond = Callable[[Messages, int], str]

#: HTTP statuses worth another attempt besides 5xx: request timeout, conflict, rate limit.
_RETRY_4XX = frozenset({408, 409, 429})
_CACHE_FORMAT = 1


@runtime_checkable
class ChatModel(Protocol):
    """A chat model seen as a black box: messages in, ``n`` completion texts out.

    Attributes:
        name: which model answers (reported next to every result it produced).
    """

    name: str

    def complete(self, messages: Messages, *, n: int = 1, temperature: float = 0.0,
                 max_tokens: int = 256, seed: int | None = None, **extra: Any) -> list[str]:
        """The texts of ``n`` choices for one conversation.

        Args:
            messages: the conversation, OpenAI style: ``[{"role": "system"|"user"|"assistant",
                "content": str}, ...]``.
            n: number of choices (independent samples) to return.
            temperature: sampling temperature; 0 asks for greedy decoding.
            max_tokens: the most tokens per choice.
            seed: sampling seed, where the backend honours one.
            **extra: further request fields (``top_p``, ``stop``, ...), passed through as JSON.

        Returns:
            ``n`` strings, choice ``i`` at index ``i``.
        """
        ...


def cache_key(payload: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``payload``: keys sorted, no spaces, UTF-8.

    Args:
        payload: a JSON-serialisable request description.

    Raises:
        ZooError: when the payload holds something JSON cannot express (an object, NaN).
    """
    try:
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ZooError(f"LLM request: every argument must be JSON-serialisable ({e})") from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def standin_embedding(text: str, dim: int = 8) -> list[float]:
    """A deterministic unit vector for ``text`` (from SHA-256), used by the stand-ins.

    Equal texts give equal vectors; different texts almost surely differ.

    Args:
        text: the text to embed.
        dim: the vector's length (>= 1).

    Returns:
        ``dim`` floats with Euclidean norm 1.
    """
    if dim < 1:
        raise ZooError(f"standin_embedding: dim must be >= 1, got {dim}")
    raw = b""
    block = 0
    while len(raw) < dim:
        raw += hashlib.sha256(f"{block}:{text}".encode("utf-8")).digest()
        block += 1
    vec = [b / 127.5 - 1.0 for b in raw[:dim]]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def _check_messages(messages: Any, who: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise ZooError(f"{who}: messages must be a non-empty list of {{'role', 'content'}} dicts, "
                       f"got {type(messages).__name__}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or "content" not in m:
            raise ZooError(f"{who}: messages[{i}] must be a dict with 'role' (str) and 'content', "
                           f"got {m!r:.80}")


def _check_n(n: Any, who: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ZooError(f"{who}: n must be an int >= 1, got {n!r}")
    return n


def _check_texts(texts: Any, who: str) -> list[str]:
    if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
        raise ZooError(f"{who}: texts must be a list of str")
    return list(texts)


class OpenAIChat:
    """A chat (and embedding) model behind an OpenAI-compatible endpoint.

    Each request is tried ``retries`` times in all; a connection error, a timeout, an HTTP 5xx
    or 408/409/429 answer leads to another attempt after ``backoff * 2**(k-1)`` seconds
    (k = attempts so far). Other 4xx answers (401 bad key, 400 bad request, 404 unknown model) are
    the caller's fault and raise at once. The ``openai`` client's own retries are off
    (``max_retries=0``), so every attempt is one HTTP request.

    Answers are cached on disk, one JSON file per request named by :func:`cache_key` of
    (endpoint, model, messages, n, temperature, max_tokens, seed, extra) and written atomically
    once the whole answer has arrived; a cache hit makes no request. The cache holds the request
    and the answer, never the key.

    Args:
        model: the model name sent to the endpoint (also this object's ``name``).
        base_url: the endpoint root, e.g. ``"http://127.0.0.1:8000/v1"``.
        api_key_env: NAME of the environment variable holding the API key, read when the first
            request is made; ``None`` for endpoints without authentication (the literal
            ``"unused"`` is sent).
        timeout: seconds per HTTP attempt.
        retries: total attempts per request (>= 1); 3 means the first try and two more.
        backoff: seconds before the second attempt, doubled before each later one.
        cache_dir: folder of the response cache; default ``cache_root()/"llm_cache"``.
        cache: read and write the cache (``False`` always asks the endpoint).
        role: what the endpoint is to the paper ("teacher", "judge", ...), used in messages.
        embedding_model: model name for :meth:`embed`; default ``model``.

    Raises:
        ZooError: on a bad argument here; on requests, see :meth:`complete`.
    """

    def __init__(self, model: str, *, base_url: str = "https://api.openai.com/v1",
                 api_key_env: str | None = "OPENAI_API_KEY", timeout: float = 60.0,
                 retries: int = 3, backoff: float = 0.5, cache_dir: str | os.PathLike | None = None,
                 cache: bool = True, role: str = "teacher",
                 embedding_model: str | None = None) -> None:
        if not isinstance(model, str) or not model:
            raise ZooError(f"OpenAIChat: model must be a non-empty string, got {model!r}")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ZooError(f"OpenAIChat: base_url must start with http:// or https://, "
                           f"got {base_url!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 1:
            raise ZooError(f"OpenAIChat: retries (total attempts) must be an int >= 1, "
                           f"got {retries!r}")
        if not timeout > 0:
            raise ZooError(f"OpenAIChat: timeout must be > 0 seconds, got {timeout!r}")
        if not backoff >= 0:
            raise ZooError(f"OpenAIChat: backoff must be >= 0 seconds, got {backoff!r}")
        self.model = model
        self.name = model
        self.embedding_model = embedding_model or model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        self.cache = bool(cache)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "llm_cache"
        self.role = role
        self._openai: Any = None  # the openai.OpenAI client, made on the first request

    def __repr__(self) -> str:
        return (f"OpenAIChat(model={self.model!r}, base_url={self.base_url!r}, "
                f"api_key_env={self.api_key_env!r}, cache_dir={str(self.cache_dir)!r})")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_openai"] = None  # the client holds the key; it is rebuilt from the environment
        return state

    # -- public API -------------------------------------------------------------------------

    def complete(self, messages: Messages, *, n: int = 1, temperature: float = 0.0,
                 max_tokens: int = 256, seed: int | None = None, **extra: Any) -> list[str]:
        """The texts of ``n`` choices from ``POST {base_url}/chat/completions``.

        Args: see :meth:`ChatModel.complete`.

        Returns:
            ``n`` strings (a choice without text content gives ``""``).

        Raises:
            ZooError: bad messages or n; the key's environment variable unset; the endpoint
                unreachable after ``retries`` attempts (naming ``base_url``, the attempts and the
                last failure); a 4xx answer (status and the server's message, key removed); an
                answer with a different number of choices than ``n``.
        """
        who = f"{self.role} {self.model}"
        _check_messages(messages, who)
        n = _check_n(n, who)
        payload = {"endpoint": "chat/completions", "model": self.model, "messages": messages,
                   "n": n, "temperature": float(temperature), "max_tokens": int(max_tokens),
                   "seed": seed, "extra": extra}

        def send(client: Any) -> list[str]:
            kwargs: dict[str, Any] = {}
            if seed is not None:
                kwargs["seed"] = int(seed)
            if extra:
                kwargs["extra_body"] = extra
            resp = client.chat.completions.create(
                model=self.model, messages=messages, n=n, temperature=float(temperature),
                max_tokens=int(max_tokens), **kwargs)
            choices = sorted(resp.choices or [], key=lambda c: c.index)
            if len(choices) != n:
                raise ZooError(f"{self.role} endpoint {self.base_url} returned {len(choices)} "
                               f"choices for n={n} (model {self.model})")
            return [c.message.content or "" for c in choices]

        return self._cached(payload, send, "choices")

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Embeddings of ``texts`` from ``POST {base_url}/embeddings`` (same cache and retries).

        Args:
            texts: B strings.

        Returns:
            B vectors (lists of D floats), in the order of ``texts``; ``[]`` for no texts.

        Raises:
            ZooError: as :meth:`complete`.
        """
        who = f"{self.role} {self.embedding_model}"
        texts = _check_texts(texts, who)
        if not texts:
            return []
        payload = {"endpoint": "embeddings", "model": self.embedding_model, "input": texts}

        def send(client: Any) -> list[list[float]]:
            resp = client.embeddings.create(model=self.embedding_model, input=texts,
                                            encoding_format="float")
            data = sorted(resp.data or [], key=lambda d: d.index)
            if len(data) != len(texts):
                raise ZooError(f"{self.role} endpoint {self.base_url} returned {len(data)} "
                               f"embeddings for {len(texts)} texts (model {self.embedding_model})")
            return [[float(x) for x in d.embedding] for d in data]

        return self._cached(payload, send, "embeddings")

    # -- internals ----------------------------------------------------------------------------

    def _client(self) -> Any:
        if self._openai is None:
            import openai

            if self.api_key_env is None:
                key = "unused"
            else:
                key = os.environ.get(self.api_key_env, "")
                if not key:
                    raise ZooError(f"environment variable {self.api_key_env} is not set: it must "
                                   f"hold the API key for {self.role} endpoint {self.base_url}")
            self._openai = openai.OpenAI(base_url=self.base_url, api_key=key,
                                         timeout=self.timeout, max_retries=0)
        return self._openai

    def _redact(self, text: str) -> str:
        if self.api_key_env is None:
            return text
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if self._openai is not None:
            key = getattr(self._openai, "api_key", None) or key
        if isinstance(key, str) and key:
            text = text.replace(key, "***")
        return text

    def _cached(self, payload: dict[str, Any], send: Callable[[Any], Any], field: str) -> Any:
        key = cache_key(payload)
        path = self.cache_dir / f"{key}.json"
        if self.cache and path.is_file():
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                result = record[field]
            except (ValueError, KeyError, TypeError):
                raise ZooError(f"{path}: unreadable LLM cache entry (expected JSON with "
                               f"'{field}'); delete the file to ask the endpoint again") from None
            log.debug("%s cache hit %s", self.role, key[:12])
            return result
        result = self._with_retries(send)
        if self.cache:
            record = {"format": _CACHE_FORMAT, "base_url": self.base_url, "request": payload,
                      field: result}
            atomic_write_text(path, json.dumps(record, ensure_ascii=False, indent=1))
        return result

    def _with_retries(self, send: Callable[[Any], Any]) -> Any:
        import openai

        last = "no attempt"
        for attempt in range(1, self.retries + 1):
            try:
                return send(self._client())
            except openai.APIStatusError as e:
                if e.status_code < 500 and e.status_code not in _RETRY_4XX:
                    raise ZooError(f"{self.role} endpoint {self.base_url} rejected the request "
                                   f"(model {self.model}): HTTP {e.status_code}: "
                                   f"{self._detail(e)}") from None
                last = f"HTTP {e.status_code}"
            except openai.APITimeoutError:
                last = f"Timeout (>{self.timeout:g}s)"
            except openai.APIConnectionError:
                last = "ConnectionError"
            except openai.APIError as e:  # a malformed answer: retrying will not mend it
                raise ZooError(f"{self.role} endpoint {self.base_url} sent an unusable answer: "
                               f"{type(e).__name__}") from None
            if attempt < self.retries:
                delay = self.backoff * 2 ** (attempt - 1)
                log.warning("%s endpoint %s attempt %d/%d failed (%s); retrying in %.2fs",
                            self.role, self.base_url, attempt, self.retries, last, delay)
                time.sleep(delay)
        raise ZooError(f"{self.role} endpoint {self.base_url} unreachable after {self.retries} "
                       f"attempts: {last}")

    def _detail(self, e: Any) -> str:
        body = getattr(e, "body", None)
        msg = None
        if isinstance(body, dict):
            err = body.get("error", body)
            msg = err.get("message") if isinstance(err, dict) else err
        text = " ".join(str(msg if msg is not None else type(e).__name__).split())
        text = self._redact(text)
        return text if len(text) <= 200 else text[:197] + "..."


class ChatStandIn:
    """A deterministic :class:`ChatModel`: choice ``i`` is ``respond(messages, i)``.

    Every call is recorded in ``calls`` (messages, n, temperature, max_tokens, seed, extra).

    Args:
        respond: ``(messages, choice_index) -> text``.
        name: the model name to report.
        embedding_dim: length of the vectors :meth:`embed` returns.
    """

    def __init__(self, respond: Respond, *, name: str = "standin", embedding_dim: int = 8) -> None:
        if not callable(respond):
            raise ZooError(f"ChatStandIn: respond must be callable (messages, i) -> str, "
                           f"got {type(respond).__name__}")
        self.respond = respond
        self.name = name
        self.embedding_dim = embedding_dim
        self.calls: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"ChatStandIn(name={self.name!r})"

    def complete(self, messages: Messages, *, n: int = 1, temperature: float = 0.0,
                 max_tokens: int = 256, seed: int | None = None, **extra: Any) -> list[str]:
        """``[respond(messages, i) for i in range(n)]``; see :meth:`ChatModel.complete`."""
        _check_messages(messages, self.name)
        n = _check_n(n, self.name)
        self.calls.append({"messages": messages, "n": n, "temperature": temperature,
                           "max_tokens": max_tokens, "seed": seed, "extra": extra})
        texts = [self.respond(messages, i) for i in range(n)]
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ZooError(f"{self.name}: respond(messages, {i}) must return str, "
                               f"got {type(t).__name__}")
        return texts

    def embed(self, texts: list[str]) -> list[list[float]]:
        """:func:`standin_embedding` of each text: B texts -> B vectors of ``embedding_dim``."""
        return [standin_embedding(t, self.embedding_dim) for t in _check_texts(texts, self.name)]


class StandInServer(str):
    """The base_url (``"http://127.0.0.1:PORT/v1"``) of a running :func:`serve_standin`.

    It is a ``str``, so it can be passed as ``base_url`` directly, and it carries the server's
    state for tests.

    Attributes:
        requests: every request received, in order: ``{"path": str, "headers": {lower-case
            name: value}, "body": parsed JSON}``.
        fail_next: how many of the next requests are answered with ``fail_status`` (settable).
    """

    requests: list[dict[str, Any]]
    fail_next: int


class _StandInHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], url_of: Callable[[int], StandInServer],
                 **state: Any) -> None:
        super().__init__(addr, _StandInHandler)
        self.url = url_of(self.server_address[1])
        self.lock = threading.Lock()
        self.__dict__.update(state)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that gave up (timeout test) leaves a broken pipe; that is not news
        log.debug("stand-in server: error while answering %s", client_address, exc_info=True)


def _error_body(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


class _StandInHandler(http.server.BaseHTTPRequestHandler):
    server: _StandInHTTPServer
    server_version = "zoo-standin/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _send(self, status: int, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        srv = self.server
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        with srv.lock:
            srv.url.requests.append({"path": self.path,
                                     "headers": {k.lower(): v for k, v in self.headers.items()},
                                     "body": body})
            fail = srv.url.fail_next > 0
            if fail:
                srv.url.fail_next -= 1
        if srv.delay:
            time.sleep(srv.delay)
        if fail:
            return self._send(srv.fail_status, _error_body("stand-in failure on purpose",
                                                           "server_error"))
        if not isinstance(body, dict):
            return self._send(400, _error_body("request body is not a JSON object",
                                               "invalid_request_error"))
        if srv.api_key is not None:
            auth = self.headers.get("Authorization", "")
            if auth != f"Bearer {srv.api_key}":
                # like real endpoints, echo what was presented: clients must redact it
                presented = auth.removeprefix("Bearer ")
                return self._send(401, _error_body(f"Incorrect API key provided: {presented}",
                                                   "invalid_request_error"))
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            if path == "/v1/chat/completions":
                return self._send(200, self._chat(body))
            if path == "/v1/embeddings":
                return self._send(200, self._embeddings(body))
        except Exception as e:  # a bug in respond/embed: tell the client, keep serving
            log.debug("stand-in server: handler failed", exc_info=True)
            return self._send(500, _error_body(f"stand-in handler raised {type(e).__name__}: {e}",
                                               "server_error"))
        return self._send(404, _error_body(f"no route {self.path}", "invalid_request_error"))

    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages") or []
        n = int(body.get("n") or 1)
        texts = [self.server.respond(messages, i) for i in range(n)]
        return {
            "id": f"chatcmpl-standin-{len(self.server.url.requests)}", "object": "chat.completion",
            "created": 0, "model": body.get("model", ""), "system_fingerprint": None,
            "choices": [{"index": i, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": str(t)}}
                        for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        as_b64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(inputs):
            vec = [float(v) for v in self.server.embed(str(text))]
            emb: Any = vec
            if as_b64:
                emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return {"object": "list", "data": data, "model": body.get("model", ""),
                "usage": {"prompt_tokens": 0, "total_tokens": 0}}


@contextlib.contextmanager
def serve_standin(respond: Respond, host: str = "127.0.0.1", port: int = 0, *,
                  fail_first: int = 0, fail_status: int = 500, api_key: str | None = None,
                  delay: float = 0.0,
                  embed: Callable[[str], list[float]] | None = None) -> Iterator[StandInServer]:
    """Run an OpenAI-compatible stand-in server on the loopback interface.

    It answers ``POST /v1/chat/completions`` (choice ``i`` is ``respond(messages, i)``) and
    ``POST /v1/embeddings`` (``embed(text)``, default :func:`standin_embedding`) in the JSON shape
    of the OpenAI API, from a thread, until the ``with`` block ends.

    Args:
        respond: ``(messages, choice_index) -> text``.
        host: ``"127.0.0.1"`` (or ``"localhost"``); nothing else is accepted.
        port: TCP port, 0 for a free one.
        fail_first: answer the first this-many requests with ``fail_status`` (for retry tests).
        fail_status: the HTTP status of those failures.
        api_key: when set, requests without ``Authorization: Bearer <api_key>`` get a 401.
        delay: seconds to wait before answering each request (for timeout tests).
        embed: ``text -> vector`` for the embeddings route.

    Yields:
        The :class:`StandInServer` base_url, carrying ``requests`` and ``fail_next``.
    """
    if host not in ("127.0.0.1", "localhost"):
        raise ZooError(f"serve_standin: host must be 127.0.0.1 (loopback only), got {host!r}")

    def url_of(bound_port: int) -> StandInServer:
        url = StandInServer(f"http://127.0.0.1:{bound_port}/v1")
        url.requests = []
        url.fail_next = int(fail_first)
        return url

    server = _StandInHTTPServer(("127.0.0.1", port), url_of, respond=respond,
                                fail_status=int(fail_status), api_key=api_key,
                                delay=float(delay), embed=embed or standin_embedding)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"zoo-standin-{server.server_address[1]}", daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
