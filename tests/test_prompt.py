"""The prompt builder: the released user-message layout, ChatML, and compaction options."""
from __future__ import annotations

import pytest
from helpers import make_row

from gplan_lib.core.prompt import PromptOptions, build_messages, build_prompt, render_chatml, user_message


def test_user_message_layout():
    text = user_message(make_row())
    lines = text.split("\n")
    assert lines[0] == "" and lines[1] == "##基础画像" and lines[2] == "-profile_1：1"
    assert "-profile_6：p_1杭州市西湖区" in lines and not any(l.startswith("-profile_7") for l in lines)
    assert "-当前城市：上海市徐汇区" in lines and "-trigger_2：上海市黄浦区p_6" in lines
    order = ["##基础画像", "##历史行为", "#当前上下文", "##时空信息", "##事件信息"]
    assert [lines.index(h) for h in order] == sorted(lines.index(h) for h in order)
    assert lines.index("-是否周末：1") < lines.index("-是否节假日：0")
    assert "u1" not in text and "tool_1" not in text  # no id, no label


def test_compaction_keeps_most_recent_events_and_most_frequent_items():
    opts = PromptOptions(system="none", max_short_events=1, max_long_items=1)
    text = user_message(make_row(), opts)
    assert "p_3" in text and "在2月1日" not in text  # the later event is kept
    assert "公园的p_2act_8了5次" in text and "商场" not in text
    assert build_messages(make_row(), opts)[0]["role"] == "user"


def test_chatml_ends_at_the_assistant_turn():
    prompt = build_prompt(make_row(), PromptOptions.named("compact"))
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert "<think>" not in prompt
    assert render_chatml([{"role": "user", "content": "x"}], add_generation_prompt=False) == "<|im_start|>user\nx<|im_end|>\n"
    full, compact = build_prompt(make_row()), prompt
    assert len(compact) < len(full) and "tool_10" in full


def test_unknown_preset_is_named():
    with pytest.raises(ValueError, match="unknown prompt preset 'huge'"):
        PromptOptions.named("huge")


def test_released_rows_compact_prompts_are_shorter(calibration_rows):
    full = [len(build_prompt(r)) for r in calibration_rows[:50]]
    compact = [len(build_prompt(r, PromptOptions.named("compact"))) for r in calibration_rows[:50]]
    assert all(c < f for c, f in zip(compact, full))
