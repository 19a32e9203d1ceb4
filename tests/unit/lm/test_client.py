"""The black-box LLM client against the loopback stand-in server (127.0.0.1 only)."""

from __future__ import annotations

import hashlib
import logging
import pickle
import socket
import time

import pytest

from zoo.common.lm.client import (ChatModel, ChatStandIn, OpenAIChat, cache_key, serve_standin,
                                  standin_embedding)
from zoo.core.errors import ZooError

KEY = "sk-zoo-test-7f3a9c1e5b2d4680"
ENV = "ZOO_TEST_LLM_KEY"
MESSAGES = [{"role": "system", "content": "You are a teacher."},
            {"role": "user", "content": "What is 2 + 3?"}]


def respond(messages, i):
    return f"{messages[-1]['content']} -> choice {i}"


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv(ENV, KEY)


def client(url, tmp_path, **kw):
    kw = {"api_key_env": ENV, "cache_dir": tmp_path / "cache", "timeout": 2.0, "retries": 1,
          "backoff": 0.01, **kw}
    return OpenAIChat("teacher-1", base_url=url, **kw)


def cache_files(tmp_path):
    d = tmp_path / "cache"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def dead_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_request_body_and_authorization_header(tmp_path, key_env):
    with serve_standin(respond, api_key=KEY) as url:
        out = client(url, tmp_path).complete(MESSAGES, n=2, temperature=0.7, max_tokens=32,
                                             seed=5, top_p=0.9)
        assert out == ["What is 2 + 3? -> choice 0", "What is 2 + 3? -> choice 1"]
        assert len(url.requests) == 1
        req = url.requests[0]
    assert req["path"] == "/v1/chat/completions"
    body = req["body"]
    assert body["model"] == "teacher-1"
    assert body["messages"] == MESSAGES
    assert (body["n"], body["temperature"], body["max_tokens"], body["seed"]) == (2, 0.7, 32, 5)
    assert body["top_p"] == 0.9  # **extra is passed through
    assert req["headers"]["authorization"] == f"Bearer {KEY}"


def test_key_never_leaks_into_cache_repr_errors_logs_or_pickle(tmp_path, key_env, caplog,
                                                              monkeypatch):
    caplog.set_level(logging.DEBUG)
    with serve_standin(respond, api_key=KEY, fail_first=1) as url:
        good = client(url, tmp_path, retries=2)
        assert good.complete(MESSAGES) == ["What is 2 + 3? -> choice 0"]
        assert len(good.embed(["a", "b"])) == 2
        texts = [repr(good), str(pickle.dumps(good))]
        # a rejected key: the stand-in echoes the presented key, as real endpoints do
        wrong = "sk-wrong-0a1b2c3d4e5f"
        monkeypatch.setenv("ZOO_TEST_WRONG_KEY", wrong)
        bad = client(url, tmp_path, api_key_env="ZOO_TEST_WRONG_KEY", retries=3)
        n_before = len(url.requests)
        with pytest.raises(ZooError, match=r"HTTP 401") as err:
            bad.complete([{"role": "user", "content": "other"}])
        assert len(url.requests) == n_before + 1  # 4xx: no retry
        assert url.requests[-1]["headers"]["authorization"] == f"Bearer {wrong}"
    msg = str(err.value)
    assert "Incorrect API key provided: ***" in msg and wrong not in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert "\n" not in msg
    texts += [msg, caplog.text, repr(bad)]
    texts += [(tmp_path / "cache" / f).read_text() for f in cache_files(tmp_path)]
    assert len(cache_files(tmp_path)) == 2  # chat + embed; the 401 left nothing
    assert any("retrying" in r.getMessage() for r in caplog.records)
    for t in texts:
        assert KEY not in t and wrong not in t


def test_two_failures_then_success_makes_three_attempts(tmp_path, key_env):
    with serve_standin(respond, fail_first=2) as url:
        out = client(url, tmp_path, retries=3).complete(MESSAGES)
        assert out == ["What is 2 + 3? -> choice 0"]
        assert len(url.requests) == 3
        assert url.requests[0]["body"] == url.requests[2]["body"]


def test_all_attempts_fail_names_url_and_attempts_and_writes_nothing(tmp_path, key_env):
    with serve_standin(respond, fail_first=100) as url:
        c = client(url, tmp_path, retries=3)
        with pytest.raises(ZooError) as err:
            c.complete(MESSAGES)
        assert len(url.requests) == 3
    assert str(err.value) == f"teacher endpoint {url} unreachable after 3 attempts: HTTP 500"
    assert cache_files(tmp_path) == []


def test_cache_hit_makes_no_request(tmp_path, key_env, monkeypatch):
    with serve_standin(respond) as url:
        c = client(url, tmp_path)
        first = c.complete(MESSAGES, n=2, temperature=0)
        assert c.complete(MESSAGES, n=2, temperature=0.0) == first  # 0 and 0.0: one key
        assert len(url.requests) == 1
        c.complete(MESSAGES, n=2, temperature=0.5)  # another request, another key
        assert len(url.requests) == 2
        vecs = c.embed(["x", "y"])
        assert c.embed(["x", "y"]) == vecs == [standin_embedding("x"), standin_embedding("y")]
        assert len(url.requests) == 3
    payload = {"endpoint": "chat/completions", "model": "teacher-1", "messages": MESSAGES,
               "n": 2, "temperature": 0.0, "max_tokens": 256, "seed": None, "extra": {}}
    assert f"{cache_key(payload)}.json" in cache_files(tmp_path)
    assert len(cache_files(tmp_path)) == 3  # one file per key, no temporary leftovers
    # the server is gone and the key unset: a fresh client still answers from the cache
    monkeypatch.delenv(ENV)
    offline = client(f"http://127.0.0.1:{dead_port()}/v1", tmp_path)
    assert offline.complete(MESSAGES, n=2, temperature=0.0) == first
    with pytest.raises(ZooError, match=rf"environment variable {ENV} is not set"):
        offline.complete(MESSAGES, n=1)


def test_unreachable_port_fails_quickly(tmp_path, key_env):
    url = f"http://127.0.0.1:{dead_port()}/v1"
    t0 = time.perf_counter()
    with pytest.raises(ZooError) as err:
        client(url, tmp_path, timeout=1.0, retries=3).complete(MESSAGES)
    assert time.perf_counter() - t0 < 5.0
    assert str(err.value) == f"teacher endpoint {url} unreachable after 3 attempts: ConnectionError"
    assert cache_files(tmp_path) == []


def test_slow_endpoint_times_out(tmp_path, key_env):
    with serve_standin(respond, delay=0.6) as url:
        with pytest.raises(ZooError, match=r"unreachable after 2 attempts: Timeout"):
            client(url, tmp_path, timeout=0.2, retries=2, role="judge").complete(MESSAGES)
        assert len(url.requests) == 2
    assert cache_files(tmp_path) == []


def test_cache_key_is_sha256_of_canonical_json():
    # keys sorted, no spaces, UTF-8 (not \u escapes), worked out by hand:
    expected = hashlib.sha256('{"a":[1,2],"b":"é"}'.encode("utf-8")).hexdigest()
    assert cache_key({"b": "é", "a": [1, 2]}) == expected
    with pytest.raises(ZooError, match="JSON-serialisable"):
        cache_key({"a": object()})


def test_chat_standin_is_deterministic_and_a_chat_model():
    s = ChatStandIn(respond, name="sim-teacher")
    assert isinstance(s, ChatModel) and isinstance(OpenAIChat("m", api_key_env=None), ChatModel)
    assert s.complete(MESSAGES, n=3) == s.complete(MESSAGES, n=3) == [
        f"What is 2 + 3? -> choice {i}" for i in range(3)]
    assert s.calls[0]["n"] == 3 and len(s.calls) == 2
    v = s.embed(["a", "a", "b"])
    assert v[0] == v[1] != v[2] and len(v[0]) == 8
    assert abs(sum(x * x for x in v[2]) - 1.0) < 1e-9
    with pytest.raises(ZooError, match=r"messages\[0\]"):
        s.complete([{"content": "no role"}])
    with pytest.raises(ZooError, match="n must be"):
        s.complete(MESSAGES, n=0)
    with pytest.raises(ZooError, match="must return str"):
        ChatStandIn(lambda m, i: 3).complete(MESSAGES)


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(ZooError, match="retries"):
        OpenAIChat("m", retries=0)
    with pytest.raises(ZooError, match="base_url"):
        OpenAIChat("m", base_url="127.0.0.1:8000")
    with pytest.raises(ZooError, match="loopback"):
        with serve_standin(respond, host="0.0.0.0"):
            pass
    (tmp_path / "cache").mkdir()
    c = OpenAIChat("m", api_key_env=None, cache_dir=tmp_path / "cache")
    payload = {"endpoint": "embeddings", "model": "m", "input": ["t"]}
    (tmp_path / "cache" / f"{cache_key(payload)}.json").write_text("{not json")
    with pytest.raises(ZooError, match="unreadable LLM cache entry"):
        c.embed(["t"])
