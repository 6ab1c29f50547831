"""The LLM teacher plug-in against a loopback server that speaks the chat-completions protocol."""
from __future__ import annotations

import pytest

from gplan_lib.llm_client import ChatClient, LLMError
from gplan_lib.llm_teacher import LLMTeacher
from gplan_lib.teacher import ExpertTeacher
from helpers import PLAN_OK, make_row


def _seeds():
    demo = ExpertTeacher().demonstrate(make_row(id="s1"))
    return [{"id": "s1", "row": make_row(id="s1").cells, "reasoning": demo.reasoning(), "plan": demo.plan}]


def test_retries_with_backoff_then_succeeds(server, monkeypatch):
    srv = server(fail_first=2, status=503)
    monkeypatch.setenv("TEST_KEY", "sk-secret")
    client = ChatClient(srv.url, "qwen3", api_key_env="TEST_KEY", backoff=0.01)
    assert client.complete([{"role": "user", "content": "hi"}]) == PLAN_OK
    assert len(srv.requests) == 3 and srv.headers[0]["Authorization"] == "Bearer sk-secret"
    assert srv.requests[0]["model"] == "qwen3" and srv.requests[0]["temperature"] == 0.0


def test_client_errors_are_not_retried_and_are_named(server):
    srv = server(fail_first=5, status=400)
    with pytest.raises(LLMError, match="HTTP 400"):
        ChatClient(srv.url, "m", backoff=0.01).complete([{"role": "user", "content": "x"}])
    assert len(srv.requests) == 1
    srv2 = server(fail_first=9, status=500)
    with pytest.raises(LLMError, match="failed after 3 tries"):
        ChatClient(srv2.url, "m", max_retries=2, backoff=0.01).complete([{"role": "user", "content": "x"}])


def test_cache_avoids_repeat_requests_and_never_stores_the_key(server, tmp_path, monkeypatch):
    srv = server()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-do-not-store")
    client = ChatClient(srv.url, "m", cache_dir=tmp_path)
    msgs = [{"role": "user", "content": "same"}]
    assert client.complete(msgs) == client.complete(msgs)
    assert len(srv.requests) == 1
    stored = "".join(p.read_text() for p in tmp_path.rglob("*.json"))
    assert "sk-do-not-store" not in stored and "same" in stored


def test_teacher_prompts_few_shot_keeps_order_and_filters(server):
    srv = server()
    teacher = LLMTeacher(ChatClient(srv.url, "m", concurrency=4), _seeds(), shots=1)
    rows = [make_row(id=str(i)) for i in range(6)]
    kept, report = teacher.label(rows)
    assert [r.id for r in kept] == [str(i) for i in range(6)] and report["kept"] == 6
    msgs = srv.requests[0]["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[2]["content"].startswith("<THOUGHT><CONTEXT>")
    bad = server(reply='[{"工具名称":"tool_1"}]')
    kept, report = LLMTeacher(ChatClient(bad.url, "m"), _seeds(), shots=1).label(rows[:2])
    assert kept == [] and report["by_rule"]["format/plan_length"] == 2
