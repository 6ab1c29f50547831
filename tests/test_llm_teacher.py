"""The LLM teacher plug-in against a loopback server that speaks the chat-completions protocol."""
from __future__ import annotations

import pytest
from helpers import PLAN_OK, make_row

from gplan_lib.core.llm_client import ChatClient, LLMError
from gplan_lib.synthesis.llm_teacher import LLMTeacher
from gplan_lib.synthesis.teacher import ExpertTeacher


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


def test_synth_with_the_llm_teacher_from_the_command_line(server, tmp_path, monkeypatch, capsys):
    """Issue 12, finding 6: the LLM teacher was reachable only from Python."""
    import hashlib
    import json

    from gplan_lib.cli import main
    from gplan_lib.core.data import load_rows
    other = PLAN_OK.replace('"tag":"美食"', '"tag":"景点"')

    def reply(messages):  # a plan that depends on the context; every fifth reply is chatty (strict filter)
        h = int(hashlib.sha256(messages[-1]["content"].encode()).hexdigest(), 16)
        return "Sure! " + PLAN_OK if h % 5 == 0 else (PLAN_OK if h % 2 else other)

    srv = server(reply_fn=reply)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-written")
    out = tmp_path / "llm"
    assert main(["synth", "--n", "40", "--test-size", "8", "--pair-anchors", "10", "--out", str(out),
                 "--teacher-url", srv.url, "--teacher-model", "qwen3-235b"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["teacher"] == {"url": srv.url, "model": "qwen3-235b"}
    assert manifest["counts"]["train"] == 32 and manifest["counts"]["test"] == 8
    report = json.loads((out / "filter_report.json").read_text())
    assert report["rejected"] > 0 and report["by_rule"]["format/extra_text"] == report["rejected"]
    assert all(r["raw_labels"] in (PLAN_OK, other) for r in load_rows(out / "train.csv"))
    pairs = [json.loads(line) for line in (out / "pairs_train.jsonl").read_text().splitlines()]
    assert pairs and all(p["chosen"] != p["rejected"] for p in pairs)
    assert "sk-never-written" not in "".join(f.read_text() for f in out.iterdir())
    capsys.readouterr()
    assert main(["synth", "--n", "10", "--out", str(tmp_path / "x"), "--teacher-url", srv.url]) == 2
    assert "--teacher-url needs --teacher-model" in capsys.readouterr().err


def test_gplan_judge_offline_and_llm(server, tmp_path, capsys):
    """Issue 12: `gplan judge` scores PRED.jsonl with the offline judge or an LLM judge."""
    import json

    from gplan_lib.cli import main
    from gplan_lib.core.data import write_gsisr_csv
    rows = [make_row(id=str(i)) for i in range(3)]
    gold = write_gsisr_csv(rows, tmp_path / "g.csv")
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"id": r.id, "output": PLAN_OK}) + "\n" for r in rows))
    assert main(["judge", "--pred", str(tmp_path / "p.jsonl"), "--gold", str(gold), "--json"]) == 0
    offline = json.loads(capsys.readouterr().out)
    assert offline["judge"] == "offline" and offline["n"] == 3 and 1 <= offline["overall"] <= 5
    srv = server(reply='{"flow": 4, "logic": 3, "st": 2}')
    assert main(["judge", "--pred", str(tmp_path / "p.jsonl"), "--gold", str(gold), "--llm-url", srv.url,
                 "--llm-model", "judge"]) == 0
    assert "llm judge, n = 3: flow 4.00, logic 3.00, st 2.00, overall 3.00" in capsys.readouterr().out


def test_real_contexts_labelled_by_the_llm_teacher(server, tmp_path, monkeypatch, capsys):
    """`gplan synth --contexts --labels teacher --teacher-url`: every context and perturbation asked of the server,
    chatty replies named by source row and rule in the report and not trained on."""
    import csv
    import hashlib
    import json

    from gplan_lib.cli import main
    from gplan_lib.core.data import COLUMNS, load_rows
    from gplan_lib.synthesis.world import simulate_row

    def reply(messages):
        return ("Sure! " if int(hashlib.sha256(messages[-1]["content"].encode()).hexdigest(), 16) % 4 == 0 else "") + PLAN_OK

    srv = server(reply_fn=reply)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-written")
    src = tmp_path / "ctx.csv"  # contexts without labels (write_gsisr_csv insists on labels)
    with open(src, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        writer.writerows([simulate_row(2, i).cells[c] for c in COLUMNS] for i in range(12))
    main(["synth", "--n", "30", "--test-size", "5", "--out", str(tmp_path / "seeds")])  # a folder with seeds
    capsys.readouterr()
    out = tmp_path / "real"
    assert main(["synth", "--contexts", str(src), "--perturb", "1", "--test-share", "0", "--out", str(out),
                 "--teacher-url", srv.url, "--teacher-model", "m", "--seeds", str(tmp_path / "seeds")]) == 0
    report = json.loads((out / "filter_report.json").read_text())
    assert report["candidates"] == len(srv.requests) == 24 and report["rejected"] > 0
    assert all(f["rules"] == ["format/extra_text"] for f in report["failures"])
    assert f"row {report['failures'][0]['row']} (id=" in capsys.readouterr().out
    assert len(load_rows(out / "train.csv")) == 24 - report["rejected"]
    assert json.loads((out / "manifest.json").read_text())["config"]["teacher"] == {"url": srv.url, "model": "m"}
    assert main(["synth", "--contexts", str(src), "--out", str(tmp_path / "x"), "--teacher-url", srv.url,
                 "--teacher-model", "m"]) == 2
    assert "needs --seeds" in capsys.readouterr().err
