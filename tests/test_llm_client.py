"""The chat client against misbehaving loopback servers (issue 12, finding 1 and 7): the key never
leaves for another address, deadlines and Retry-After hold, only valid replies are cached."""
from __future__ import annotations

import time

import pytest
from helpers import chat_body, http_reply, make_row

from gplan_lib.core.llm_client import ChatClient, LLMError, retry_after
from gplan_lib.evaluation.judge import LLMJudge

MSG = [{"role": "user", "content": "hi"}]


def test_a_redirect_is_not_followed_and_the_key_stays_home(raw, monkeypatch):
    monkeypatch.setenv("TEST_KEY", "sk-secret")
    other = raw(http_reply("200 OK", chat_body("stolen")))
    first = raw(http_reply("302 Found", Location=f"http://127.0.0.1:{other.port}/v1/chat/completions"))
    with pytest.raises(LLMError, match="redirect.*not followed"):
        ChatClient(first.url, "m", api_key_env="TEST_KEY", backoff=0.01).complete(MSG)
    assert "Bearer sk-secret" in first.requests[0][0] and other.requests == []


def test_the_judge_command_fails_clearly_on_a_redirect(raw, monkeypatch, tmp_path, capsys):
    import json

    from gplan_lib.cli import main
    from gplan_lib.core.data import write_gsisr_csv
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    other = raw(http_reply("200 OK", chat_body('{"flow": 5, "logic": 5, "st": 5}')))
    first = raw(http_reply("302 Found", Location=f"http://127.0.0.1:{other.port}/v1/chat/completions"))
    gold = write_gsisr_csv([make_row(id="r1")], tmp_path / "g.csv")
    (tmp_path / "p.jsonl").write_text(json.dumps({"id": "r1", "output": make_row()["raw_labels"]}) + "\n")
    assert main(["judge", "--pred", str(tmp_path / "p.jsonl"), "--gold", str(gold), "--llm-url", first.url,
                 "--llm-model", "m"]) == 2
    err = capsys.readouterr().err
    assert "redirects are not followed" in err and "sk-secret" not in err and other.requests == []


def test_retry_after_is_honoured(raw):
    srv = raw(http_reply("429 Too Many Requests", Retry_After="1"), http_reply("200 OK", chat_body("ok")))
    t = time.monotonic()
    assert ChatClient(srv.url, "m", backoff=0.01).complete(MSG) == "ok"
    assert time.monotonic() - t >= 1.0
    assert retry_after("2.5") == 2.5 and retry_after("soon") == 0.0 and retry_after(None) == 0.0


def test_a_trickling_reply_hits_the_whole_request_deadline(raw):
    srv = raw(http_reply("200 OK", chat_body("x" * 200)), trickle=0.05)
    t = time.monotonic()
    with pytest.raises(LLMError, match="no complete reply within 1 s"):
        ChatClient(srv.url, "m", timeout=1.0, max_retries=0).complete(MSG)
    assert time.monotonic() - t < 3


def test_a_bad_status_line_is_retried_then_named(raw):
    srv = raw(b"garbage\r\n\r\n", b"garbage\r\n\r\n")
    with pytest.raises(LLMError, match="failed after 2 tries"):
        ChatClient(srv.url, "m", max_retries=1, backoff=0.01).complete(MSG)


def test_error_bodies_are_not_quoted(raw, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-echoed")
    srv = raw(http_reply("401 Unauthorized", b'{"error": "bad key sk-echoed"}'))
    with pytest.raises(LLMError) as err:
        ChatClient(srv.url, "m").complete(MSG)
    assert "sk-echoed" not in str(err.value) and "401" in str(err.value)


def test_the_cache_knows_the_server_and_keeps_only_valid_replies(raw, tmp_path):
    a = raw(http_reply("200 OK", chat_body("from a")))
    b = raw(http_reply("200 OK", chat_body("from b")))
    assert ChatClient(a.url, "m", cache_dir=tmp_path).complete(MSG) == "from a"
    assert ChatClient(b.url, "m", cache_dir=tmp_path).complete(MSG) == "from b"  # another server: not a hit
    null = raw(http_reply("200 OK", chat_body(None)))
    with pytest.raises(LLMError, match="content is NoneType"):
        ChatClient(null.url, "m", cache_dir=tmp_path / "n").complete(MSG)
    assert not list((tmp_path / "n").rglob("*.json"))
    six = raw(*[http_reply("200 OK", chat_body('{"flow": 6, "logic": 3, "st": 3}'))] * 2)
    with pytest.raises(LLMError, match="row r1.*1..5"):
        LLMJudge(ChatClient(six.url, "m", cache_dir=tmp_path / "j")).judge([make_row(id="r1")], [[{"工具名称": "tool_9"}]])
    assert not list((tmp_path / "j").rglob("*.json"))


def test_a_truncated_cache_file_is_a_miss(raw, tmp_path):
    srv = raw(http_reply("200 OK", chat_body("one")), http_reply("200 OK", chat_body("two")))
    client = ChatClient(srv.url, "m", cache_dir=tmp_path)
    assert client.complete(MSG) == "one"
    (path,) = tmp_path.rglob("*.json")
    path.write_text(path.read_text()[:10])
    assert client.complete(MSG) == "two" and client.complete(MSG) == "two"


def test_base_url_must_be_http():
    with pytest.raises(ValueError, match="http"):
        ChatClient("file:///etc/passwd", "m")
