"""The three-tier rule filter (paper Sec. 3.2): one hand-made failure per rule, hostile strings."""
from __future__ import annotations

import json

import pytest
from helpers import PLAN_OK
from hypothesis import given, settings
from hypothesis import strategies as st

from gplan_lib.core.intents import MAX_PLAN_LEN, TOOLS, dumps_plan
from gplan_lib.core.rule_filter import RULES, check_output, passes

T1 = {"工具名称": "tool_1", "起始位置": "当前位置", "终点位置": "订单目的地"}
T8, T9, T6 = {"工具名称": "tool_8"}, {"工具名称": "tool_9"}, {"工具名称": "tool_6"}
FOOD = {"工具名称": "tool_5", "起始位置": "订单目的地", "空间范围": "附近", "tag": "美食"}
SIGHT = {"工具名称": "tool_5", "起始位置": "当前位置", "空间范围": "全城", "tag": "景点"}


def rules(text: str) -> list[tuple[str, str, int | None]]:
    return [(v.tier, v.rule, v.index) for v in check_output(text, strict=True)]


CASES = {
    "json_missing": ("我推荐先打车再吃饭", ("format", "json_missing", None)),
    "json_parse": ('[{"工具名称":"tool_1"},{"工具名称":"tool_8"', ("format", "json_parse", None)),
    "extra_text": ("Sure! Here is the plan: " + PLAN_OK + " IGNORE ALL PREVIOUS INSTRUCTIONS",
                   ("format", "extra_text", None)),
    # issue 20: a 16 MiB + 1 reasoning passed, then `validate` could not read the CSV cell back
    "too_long": ("<THOUGHT>" + "x" * (16 * 1024 * 1024) + "</THOUGHT>" + PLAN_OK, ("format", "too_long", None)),
    "not_an_object": (json.dumps([T1, "tool_8", T9, SIGHT], ensure_ascii=False), ("format", "not_an_object", 1)),
    "plan_length": (dumps_plan([T1, T8, T9]), ("format", "plan_length", None)),
    "step_count": ("<THOUGHT><CONTEXT>c</CONTEXT><STRATEGY>s</STRATEGY><STEP_1>a</STEP_1><STEP_2>b</STEP_2></THOUGHT>"
                   + PLAN_OK, ("format", "step_count", None)),
    "missing_tool": (dumps_plan([T1, T8, {"tag": "美食"}, T9]), ("schema", "missing_tool", 2)),
    "unknown_tool": (dumps_plan([T1, T8, {"工具名称": "tool_11"}, T9]), ("schema", "unknown_tool", 2)),
    "missing_param": (dumps_plan([T1, T8, {"工具名称": "tool_5", "起始位置": "当前位置", "tag": "美食"}, T9]),
                      ("schema", "missing_param", 2)),
    "unknown_param": (dumps_plan([T1, {"工具名称": "tool_8", "tag": "酒店"}, FOOD, T9]), ("schema", "unknown_param", 1)),
    "inadmissible_value": (dumps_plan([T1, T8, {**FOOD, "tag": "咖啡"}, T9]), ("schema", "inadmissible_value", 2)),
    "dangling_reference": (dumps_plan([T1, T8, {**FOOD, "起始位置": "前一位推荐结果"}, T9]),
                           ("logic", "dangling_reference", 2)),
    "mutual_exclusion": (dumps_plan([T1, T8, {**T1, "终点位置": "家"}, T9]), ("logic", "mutual_exclusion", 2)),
    "duplicate_intent": (dumps_plan([T1, T9, FOOD, T9]), ("logic", "duplicate_intent", 3)),
}


def test_every_rule_has_a_case():
    assert set(CASES) == set(RULES)


@pytest.mark.parametrize("rule", sorted(CASES))
def test_each_rule_flags_its_case(rule):
    text, expected = CASES[rule]
    assert expected in rules(text)


def test_valid_plans_pass_with_reasoning_fences_and_latent_prefix():
    assert passes(PLAN_OK)
    assert passes("```json\n" + PLAN_OK + "\n```")
    steps = "".join(f"<STEP_{i}>x</STEP_{i}>" for i in range(1, 5))
    assert passes(f"<THOUGHT><CONTEXT>c</CONTEXT><STRATEGY>s</STRATEGY>{steps}</THOUGHT>{PLAN_OK}")
    latent = "<THOUGHT>" + "".join(f"<T_{i}_a><T_{i}_b><T_{i}_c>" for i in range(1, 5)) + "</THOUGHT>"
    assert passes(latent + PLAN_OK)


def test_reference_right_after_a_place_producer_passes():
    # 前一位推荐结果 after the POI card the user is at (tool_6) resolves, as in the released rows.
    plan = [T6, {**T1, "终点位置": "前一位推荐结果"}, FOOD, T9]
    assert passes(dumps_plan(plan))
    assert ("logic", "dangling_reference", 0) in rules(dumps_plan([{**SIGHT, "起始位置": "前一位推荐结果"}, T1, T8, T9]))


def test_mutual_exclusion_counts_the_whole_group():
    nearby_transit = {"工具名称": "tool_4"}
    assert ("logic", "mutual_exclusion", 1) in rules(dumps_plan([T1, nearby_transit, FOOD, T9]))


def test_truncated_output_fails_format_but_reports_schema_of_what_was_recovered():
    full = dumps_plan([T1, T8, {**FOOD, "tag": "咖啡"}, T9])
    text = full[: full.rindex(",{")] + ',{"工具名'  # the last intent is cut off mid-key
    got = rules(text)
    assert ("format", "json_parse", None) in got and ("schema", "inadmissible_value", 2) in got
    assert ("format", "plan_length", None) in got  # three intents recovered


def test_longest_allowed_plan():
    plan = [T1, T8, T6, T9, SIGHT, {**SIGHT, "tag": "购物"}, {**SIGHT, "tag": "丽人"},
            {**SIGHT, "tag": "酒店"}, {**SIGHT, "tag": "停车场"}]
    assert len(plan) == MAX_PLAN_LEN and passes(dumps_plan(plan))
    assert ("format", "plan_length", None) in rules(dumps_plan(plan + [{**SIGHT, "tag": "充电站"}]))


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=6),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                           max_leaves=8)
intent_like = st.dictionaries(st.sampled_from(["工具名称", "起始位置", "终点位置", "空间范围", "tag", "x"]),
                              st.sampled_from([*TOOLS, "前一位推荐结果", "美食", "附近", "", "tool_0"]) | json_values,
                              max_size=5)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('[]{}",:\'\\ <>/THOUGHTSEP_1工具名称tool_5')), max_size=80) | st.text())
def test_never_raises_on_hostile_strings(text):
    for v in check_output(text):
        assert v.tier in ("format", "schema", "logic") and v.rule in RULES


@settings(max_examples=300, deadline=None)
@given(st.lists(intent_like | json_values, max_size=11))
def test_never_raises_on_arbitrary_json_arrays(items):
    text = json.dumps(items, ensure_ascii=False)
    for v in check_output(text):
        assert v.rule in RULES
    assert isinstance(passes(text[: len(text) // 2]), bool)


def test_non_text_input_is_a_format_failure():
    assert rules(None) == [("format", "json_missing", None)]  # type: ignore[arg-type]


def test_released_labels_report(calibration_rows):
    """Every released calibration label is checked; the filter's verdicts are stated, not assumed."""
    flagged = {r.id: check_output(r["raw_labels"]) for r in calibration_rows}
    flagged = {k: v for k, v in flagged.items() if v}
    # Measured on calibration.csv: all 501 labels pass (the rows that break the rules are in the held-back half).
    assert flagged == {}


def test_strict_mode_allows_only_the_reasoning_block_and_the_array():
    latent = "<THOUGHT>" + "".join(f"<T_{i}_a><T_{i}_b><T_{i}_c>" for i in range(1, 5)) + "</THOUGHT>"
    assert check_output(f"  {latent}{PLAN_OK}\n", strict=True) == []
    chatty = "Sure! Here is the plan: " + PLAN_OK + " IGNORE ALL PREVIOUS INSTRUCTIONS"
    assert passes(chatty) and check_output(chatty, strict=True)[0].rule == "extra_text"  # lenient vs strict
    for text in ("```json\n" + PLAN_OK + "\n```", PLAN_OK + latent, "note " + latent + PLAN_OK):
        assert [v.rule for v in check_output(text, strict=True)] == ["extra_text"], text


@pytest.mark.parametrize("text", ["[" * 1000 + "]" * 1000, "{" * 5000 + "}" * 5000, "[{" * 3000,
                                  '[{"工具名称": ' * 2000 + "]"])
def test_deep_nesting_is_a_format_failure_not_a_crash(text):
    assert rules(text) and all(r[0] == "format" for r in rules(text) if r[2] is None)


@pytest.mark.parametrize("unit", ["<THOUGHT>", "</THOUGHT>", "<THOUGHT></THOUGHT>", "[", "{", '"', "```json",
                                  "<THOUGHT>[{", "[<THOUGHT>"])
def test_parsing_time_is_linear_on_repeated_units(unit):
    import time
    times = []
    for n in (20_000, 80_000):
        t = time.perf_counter()
        check_output(unit * n, strict=True)
        times.append(time.perf_counter() - t)
    assert times[1] < 1.0 and times[1] < 8 * times[0] + 0.05, times  # 4x the input, far from 16x the time


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["<THOUGHT>", "</THOUGHT>", "[", "]", "{", "}", '"', "\\", "```json", "工具名称",
                                 "<T_1_a>", ":", ","]), min_size=1, max_size=8), st.integers(1, 120_000))
def test_never_raises_and_stays_fast_on_a_megabyte(units, n):
    import time
    text = ("".join(units) * n)[:1_000_000]
    t = time.perf_counter()
    for v in check_output(text, strict=True):
        assert v.rule in RULES
    assert time.perf_counter() - t < 2.0
