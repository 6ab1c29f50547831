"""Evaluation (paper Sec. 5): tool-level scoring, the Table 1 baselines, the judge, constrained
decoding, response time under load and the real-shape timing path."""
from __future__ import annotations

import json
import time

import pytest
import torch
from helpers import PLAN_OK, TINY_ARCH, make_row, teacher_rows

from gplan_lib.core.intents import MAX_PLAN_LEN, TOOL_KEY, TOOLS, dumps_plan, loads_plan
from gplan_lib.core.llm_client import ChatClient
from gplan_lib.core.metrics import score_sample, tool_level
from gplan_lib.core.prompt import PromptOptions, build_messages
from gplan_lib.core.rule_filter import check_output
from gplan_lib.core.scaffold import latent_valid
from gplan_lib.core.situation import situation_of
from gplan_lib.evaluation import baseline_inputs, baselines
from gplan_lib.evaluation.config import BaselineConfig
from gplan_lib.evaluation.constrained import ConstrainedPlanner, admissible, all_intents, unit_text
from gplan_lib.evaluation.judge import JudgeParseError, LLMJudge, OfflineJudge, parse_scores
from gplan_lib.evaluation.latency import interleaved_batch1, latency_ratio, open_loop, serve, table5_ratios
from gplan_lib.synthesis.teacher import ExpertTeacher
from gplan_lib.training.generation import MODEL_CARD, StudentPlanner, model_card
from gplan_lib.training.modeling import add_latent_tokens, chat_prompt, save, tiny_qwen3, train_tokenizer


@pytest.fixture(scope="module")
def rows():
    return teacher_rows(33, 40)


# --- tool-level scoring ---------------------------------------------------------------------------

def test_tool_level_ignores_parameters_but_not_tools():
    gold = loads_plan(PLAN_OK)
    other_params = [{**a, "起始位置": "家"} if "起始位置" in a else a for a in gold]
    assert score_sample(dumps_plan(other_params), gold, tools=True)["acc1"] == 0.0
    assert tool_level(other_params, gold) == {"tool_acc1": 1.0, "tool_ndcg3": 1.0, "tool_nes": 1.0}
    ten = [{TOOL_KEY: "tool_10"}] + gold[1:]
    assert tool_level(ten, gold)["tool_acc1"] == 0.0 and tool_level([], gold)["tool_nes"] == 0.0


# --- baselines --------------------------------------------------------------------------------------

def test_baseline_inputs_never_contain_the_label(rows):
    row = rows[0]
    blank = row.replace(raw_labels="[]")
    assert baseline_inputs.context_tokens(row) == baseline_inputs.context_tokens(blank)
    assert baseline_inputs.context_words(row) == baseline_inputs.context_words(blank)
    assert any(t.startswith("hist=") for t in baseline_inputs.context_tokens(row))
    assert baseline_inputs.context_tokens(row, "facts") == baseline_inputs.context_tokens(blank, "facts")
    assert "trigger_4=" + row["trigger_4"] in baseline_inputs.context_tokens(row, "raw")
    assert any(t.startswith("at_order_poi=") for t in baseline_inputs.context_tokens(row, "facts"))
    with pytest.raises(ValueError, match="situation"):
        baseline_inputs.context_tokens(row, "situation")


def test_p5_ids_round_trip_and_tell_tool_1_from_tool_10():
    tools = ["tool_1", "tool_10", "tool_5"]
    text = baselines.p5_target(tools)
    assert text[:4] == ["tool", "_", "1", ";"] and text[4:9] == ["tool", "_", "1", "0", ";"]
    assert baselines.p5_parse(text) == tools
    assert baselines.p5_parse(["tool", "_", "4", "2", ";", "tool", "_", "9", ";"]) == ["tool_9"]


def test_semantic_ids_are_unique_and_share_prefixes_by_content(rows):
    ids = baselines.semantic_ids([r.plan for r in rows])
    assert set(ids) == set(TOOLS) and len(set(ids.values())) == len(TOOLS)
    assert all(len(code) == 3 for code in ids.values())
    codes = baselines.rq_kmeans(torch.randn(30, 4).numpy(), (4, 3))
    assert codes.shape == (30, 2) and codes[:, 0].max() < 4 and codes[:, 1].max() < 3


@pytest.mark.parametrize("name", baselines.BASELINES)
def test_each_baseline_trains_and_predicts_library_tools(name, rows):
    model, history = baselines.train_baseline(name, rows, TINY_ARCH, BaselineConfig(epochs=3, batch_size=16, lr=3e-3))
    assert len(history) == 3 and history[-1] < history[0]
    for row in rows[:3]:
        pred = model.tools(row)
        assert len(pred) <= MAX_PLAN_LEN and all(t in TOOLS for t in pred)


def test_a_saved_baseline_is_reused_only_under_its_own_key(rows, tmp_path, capsys):
    """Notebook 04 reuses a trained baseline whose configuration and rows are unchanged (issue 21, item 7)."""
    model, history = baselines.train_baseline("SASRec", rows, TINY_ARCH, BaselineConfig(epochs=1, batch_size=16, lr=3e-3))
    path = tmp_path / "baselines" / "SASRec.pt"
    baselines.save_trained(path, "key-a", (model, history))
    again, again_history = baselines.load_trained(path, "key-a")
    assert again_history == history and [again.tools(r) for r in rows[:8]] == [model.tools(r) for r in rows[:8]]
    assert baselines.load_trained(path, "key-b") is None
    assert "another configuration" in capsys.readouterr().out
    path.write_bytes(b"not a pickle")
    assert baselines.load_trained(path, "key-a") is None
    assert "unreadable" in capsys.readouterr().out
    assert baselines.load_trained(tmp_path / "absent.pt", "key-a") is None


def test_table1_puts_the_papers_rows_beside_ours(rows):
    from gplan_lib.core.reporting import table1
    from gplan_lib.evaluation.experiment import PAPER_TABLE1, score_records, score_tools
    recs = ExpertTeacher().predict(rows)
    tools = [{"output": dumps_plan([{TOOL_KEY: t} for t in baseline_inputs.tool_sequence(r.plan)])} for r in rows]
    t = table1({"SASRec": score_tools(tools, rows), "PICD + SC-DPO": score_records(recs, rows)}, PAPER_TABLE1)
    assert t[0]["paper Acc@1"] == 0.361 and t[0]["tool Acc@1"].startswith("1.000") and t[0]["Acc@1 (full intent)"] == "-"
    assert t[1]["paper Acc@1"] == 0.627 and t[1]["Acc@1 (full intent)"] != "-"


def test_unknown_baseline_is_named_in_the_error(rows):
    with pytest.raises(ValueError, match="HSTU"):
        baselines.train_baseline("HSTU", rows, TINY_ARCH, BaselineConfig(epochs=1, batch_size=8, lr=1e-3))


# --- judge --------------------------------------------------------------------------------------------

def test_offline_judge_rewards_the_immediate_need_and_never_reads_the_label(rows):
    judge, teacher = OfflineJudge(), ExpertTeacher()
    good = [judge.score(r, teacher.plan(r)) for r in rows]
    assert sum(v.flow for v in good) / len(good) >= 4.5
    for row, v in zip(rows, good):
        assert judge.score(row.replace(raw_labels="[]"), teacher.plan(row)) == v
    reversed_ = [judge.score(r, teacher.plan(r)[::-1]) for r in rows]
    assert sum(v.overall for v in reversed_) < sum(v.overall for v in good)


def test_offline_judge_names_each_failure():
    row = make_row(current_poi_name="p_6", trigger_4="p_6", current_tag="商场")  # at the order's POI
    assert situation_of(row).at_order_poi
    plan = [{TOOL_KEY: "tool_1", "起始位置": "当前位置", "终点位置": "订单目的地"}, {TOOL_KEY: "tool_9"}]
    v = OfflineJudge().score(row, plan)
    assert v.st == 2 and "already there" in " ".join(v.reasons["st"])
    inverted = [{TOOL_KEY: "tool_10"}, {TOOL_KEY: "tool_6"}, {TOOL_KEY: "tool_1", "起始位置": "当前位置", "终点位置": "家"}]
    v = OfflineJudge().score(row, inverted)
    assert v.logic == 1 and sum("stage inversion" in r for r in v.reasons["logic"]) == 2


def test_judge_replies_are_parsed_strictly():
    assert parse_scores('<think>hm {"x": 1}</think>{"flow": 4, "logic": 3, "st": 5}').as_dict()["overall"] == 4
    for reply, why in [('{"flow": 4, "logic": 3}', "keys"), ('{"flow": 4, "logic": 3, "st": 6}', "1..5"),
                       ('{"flow": true, "logic": 3, "st": 3}', "1..5"), ('{"flow": 4.5, "logic": 3, "st": 3}', "1..5"),
                       ("Flow 4, Logic 3", "found 0"), ('{"flow": 4, "logic": 3, "st": 3} {"flow": 1}', "found 2")]:
        with pytest.raises(JudgeParseError, match=why):
            parse_scores(reply, "r7")
    with pytest.raises(JudgeParseError, match="row r7"):
        parse_scores("no", "r7")


def test_llm_judge_sends_the_rubric_without_the_target_and_caches(server, tmp_path, rows):
    srv = server(reply='{"flow": 5, "logic": 4, "st": 3}')
    client = ChatClient(srv.url, "judge-model", cache_dir=tmp_path, backoff=0.01)
    judge = LLMJudge(client)
    plans = [ExpertTeacher().plan(r) for r in rows[:3]]
    verdicts = judge.judge(rows[:3], plans)
    assert [(v.flow, v.logic, v.st) for v in verdicts] == [(5, 4, 3)] * 3
    sent = srv.requests[0]
    assert sent["temperature"] == 0.0 and "Spatiotemporal" in sent["messages"][0]["content"]
    assert rows[0]["raw_labels"] not in json.dumps(sent, ensure_ascii=False)
    judge.judge(rows[:3], plans)
    assert len(srv.requests) == 3  # the second pass came from the cache
    with pytest.raises(ValueError, match="temperature 0"):
        LLMJudge(ChatClient(srv.url, "m", temperature=0.7))


# --- constrained decoding --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def student_dirs(rows, tmp_path_factory):
    """Untrained tiny students (random weights: the worst case for validity) in both modes."""
    opts = PromptOptions.named("tiny")
    tok = train_tokenizer([m["content"] for r in rows for m in build_messages(r, opts)] + [r["raw_labels"] for r in rows],
                          vocab_size=600)
    add_latent_tokens(tok)
    out = {}
    for mode in ("direct", "picd", "cot"):
        torch.manual_seed(1)
        d = save(tiny_qwen3(tok, TINY_ARCH), tok, tmp_path_factory.mktemp(mode))
        (d / MODEL_CARD).write_text(json.dumps(model_card(mode, opts)))
        out[mode] = d
    return out


def test_the_grammar_enumerates_the_library_and_its_logic():
    intents = all_intents()
    assert len(intents) == 21 + 21 + 90 + 10 + 6 and len({dumps_plan([a]) for a in intents}) == len(intents)
    ride = {TOOL_KEY: "tool_1", "起始位置": "当前位置", "终点位置": "家"}
    assert not admissible(ride, [ride]) and not admissible({TOOL_KEY: "tool_4"}, [ride])
    ref = {TOOL_KEY: "tool_5", "起始位置": "前一位推荐结果", "空间范围": "附近", "tag": "美食"}
    assert not admissible(ref, []) and not admissible(ref, [{TOOL_KEY: "tool_9"}]) and admissible(ref, [ride])
    assert unit_text({TOOL_KEY: "tool_9"}, last=True) == '9"}]'


@pytest.mark.parametrize("mode", ["picd", "direct"])
def test_constrained_outputs_always_pass_the_filter_and_latent_valid(mode, student_dirs, rows):
    planner = ConstrainedPlanner(StudentPlanner(student_dirs[mode], device="cpu"))
    for r in planner.predict(rows[:6]):
        assert check_output(r["output"]) == [], r["output"]
        assert latent_valid(r["output"])[0] == (mode == "picd")
        assert r["forward_passes"] < r["new_tokens"] / 2  # forced runs go through in one pass


def test_constrained_decoding_refuses_free_text_reasoning(student_dirs):
    with pytest.raises(ValueError, match="cot"):
        ConstrainedPlanner(StudentPlanner(student_dirs["cot"], device="cpu"))


def test_constrained_decoding_picks_what_free_greedy_picks_when_that_is_valid(student_dirs, rows):
    """Forcing a token the model would have chosen anyway changes nothing: with a model that is
    pushed towards one valid output, both decoders agree token for token."""
    planner = StudentPlanner(student_dirs["direct"], device="cpu")
    target = planner.tokenizer(PLAN_OK, add_special_tokens=False)["input_ids"] + [planner.tokenizer.eos_token_id]
    prompt = planner.tokenizer(chat_prompt(planner.tokenizer, build_messages(rows[0], planner.options)),
                               add_special_tokens=False)["input_ids"]
    opt = torch.optim.Adam(planner.model.parameters(), lr=1e-2)
    ids = torch.tensor([prompt + target])
    labels = ids.clone()
    labels[0, :len(prompt)] = -100
    planner.model.train()
    for _ in range(150):
        opt.zero_grad()
        planner.model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
    planner.model.eval()
    free = planner.generate(rows[:1], 1, 80, progress=False)[0]["output"]
    assert free == PLAN_OK
    assert ConstrainedPlanner(planner).decode(rows[0]).output == free


# --- latency ----------------------------------------------------------------------------------------
class _Timed:
    """A stand-in planner whose response time is set per row; it logs the order in which rows reach it."""

    def __init__(self, name: str, ms: dict, log: list):
        self.name, self.ms, self.log = name, ms, log

    def generate(self, rows, batch_size, max_new_tokens, progress=True, desc=""):
        self.log.extend((self.name, r.id) for r in rows)
        return [{"id": r.id, "output": "", "latency_ms": self.ms[r.id], "new_tokens": 2} for r in rows]


def test_table5_planners_take_turns_request_by_request_and_ratios_carry_intervals(rows):
    test = rows[:4]
    log: list = []
    planners = {n: _Timed(n, {r.id: k * 10.0 + i for i, r in enumerate(test)}, log)
                for k, n in enumerate(("CoT-SFT", "PICD (CALR)", "Direct-SFT"), start=1)}
    records = interleaved_batch1(planners, test, 8, desc="t")
    timed = log[6:]  # after two warm-up requests each
    assert [r for _, r in timed[:3]] == [test[0].id] * 3 and [r for _, r in timed[3:6]] == [test[1].id] * 3
    assert [n for n, _ in timed[:3]] == ["CoT-SFT", "PICD (CALR)", "Direct-SFT"]
    assert [n for n, _ in timed[3:6]] == ["PICD (CALR)", "Direct-SFT", "CoT-SFT"]  # the order rotates
    assert [r["id"] for r in records["CoT-SFT"]] == [r.id for r in test]
    ratios = table5_ratios(records)
    cot = ratios["CoT-SFT / PICD (CALR)"]  # means (10+11+12+13)/4 = 11.5 and 21.5
    assert cot["ratio"] == pytest.approx(11.5 / 21.5) and cot["ci95"][0] <= cot["ratio"] <= cot["ci95"][1]
    assert cot["tokens"] == 1.0 and cot["paper (4B, QPS 10)"] == pytest.approx(1.85 / 0.503)
    with pytest.raises(ValueError, match="same rows"):
        latency_ratio(records["CoT-SFT"], records["Direct-SFT"][:2])



def test_open_loop_builds_a_queue_when_requests_outpace_the_server(rows):
    def respond(row):
        time.sleep(0.05)
        return "[]", 3

    with serve(respond) as url:
        fast = open_loop(url, rows[:4], qps=2, max_seconds=10)
        slow = open_loop(url, rows[:6], qps=100, max_seconds=10)
        cut = open_loop(url, rows[:8], qps=100, max_seconds=0.2)
    assert fast["answered"] == 4 and 45 < fast["mean_ms"] < 150
    assert slow["mean_ms"] > 1.5 * fast["mean_ms"]  # queued behind one worker
    assert cut["unanswered"] >= 3 and cut["answered"] + cut["unanswered"] == 8
    with pytest.raises(ValueError):
        open_loop(url, rows[:1], qps=0, max_seconds=1)


def _raw_post(url: str, head: str, body: bytes = b"", pause: float = 0.0) -> tuple[int, dict]:
    """Send a hand-made request; return the status and the JSON reply."""
    import socket
    from urllib.parse import urlsplit
    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n\r\n")
        time.sleep(pause)
        try:
            sock.sendall(body)
        except OSError:
            pass
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1] or b"{}")


def test_the_server_answers_malformed_requests_with_4xx(rows, monkeypatch):
    """Issue 12, finding 11: malformed requests got no reply at all; no body limit, no read timeout."""
    import gplan_lib.evaluation.latency as serving
    monkeypatch.setattr(serving, "READ_TIMEOUT", 0.5)
    calls = []
    good = json.dumps(rows[0].cells, ensure_ascii=False).encode()
    with serve(lambda row: (calls.append(row.id) or "[]", 1)) as url:
        post = "POST /plan HTTP/1.1\r\nHost: x"
        cases = [(post, b"", 411), (post + "\r\nContent-Length: abc", b"", 400),
                 (post + f"\r\nContent-Length: {2 ** 40}", b"", 413),
                 (post + "\r\nContent-Length: 5", b"{nope", 400),
                 (post + "\r\nContent-Length: 2", b"[]", 400),
                 (post + "\r\nContent-Length: 13", b'{"id": "x1"}\n', 400),
                 ("POST /other HTTP/1.1\r\nHost: x\r\nContent-Length: 2", b"{}", 404)]
        for head, body, want in cases:
            status, reply = _raw_post(url, head, body)
            assert status == want and reply["error"], (head, reply)
        status, reply = _raw_post(url, post + "\r\nContent-Length: 100", b"{", pause=1.0)  # a trickling client
        assert status == 408
        assert _raw_post(url, post + f"\r\nContent-Length: {len(good)}", good)[0] == 200
    assert calls == [rows[0].id]  # only the well-formed request reached the planner


def test_queued_requests_are_not_planned_after_the_server_stops(rows):
    """Issue 11, finding 8: abandoned requests kept generating into the next measurement."""
    calls = []

    def respond(row):
        calls.append(row.id)
        time.sleep(0.1)
        return "[]", 1

    with serve(respond) as url:
        cut = open_loop(url, rows[:10], qps=200, max_seconds=0.15)
    n = len(calls)
    time.sleep(0.5)
    assert cut["unanswered"] >= 5 and len(calls) <= n + 1


def test_real_qwen3_shapes_have_the_published_sizes():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from gplan_lib.evaluation.latency import QWEN3_SHAPES, time_decoding
    for size, billions in (("1.7B", 1.72), ("4B", 4.02)):
        with torch.device("meta"):
            model = Qwen3ForCausalLM(Qwen3Config(**QWEN3_SHAPES[size]))
        assert abs(sum(p.numel() for p in model.parameters()) / 1e9 - billions) < 0.03
    tiny = dict(TINY_ARCH, vocab_size=50, tie_word_embeddings=True)
    tiny.pop("max_position_embeddings")
    out = time_decoding(tiny, 8, {"a": 3, "b": 6}, device="cpu", dtype=torch.float32, repeats=1)
    assert out["b"]["new_tokens"] == 6 and out["a"]["mean_s"] > 0
