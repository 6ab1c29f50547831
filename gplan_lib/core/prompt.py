"""Render a GSISR row as the chat the released code feeds Qwen3 (system, user; ChatML).

The user message follows the released layout: profile, history, spatiotemporal and event
sections, one ``-label：value`` line each (full-width colon), starting with a newline.
``PromptOptions`` compacts it for tiny models (fewer behaviour events, a short or no system
prompt); the same options are applied to every data source, synthetic or released.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .data import GsisrRow
from .intents import ADMISSIBLE, END, RANGE, START, TAG, TOOLS

EVENT_SPLIT = re.compile(r", (?=在)")
SYSTEM_SHORT = "你是高德首页意图规划助手。先输出<THOUGHT>推理，再输出JSON意图序列。"


def _system_full() -> str:
    tools = "\n".join(f"- {t.name}（{t.zh}）参数：{'、'.join(t.params) or '无'}" for t in TOOLS.values())
    return (
        "你是高德首页的意图规划助手。根据用户画像、历史行为和当前时空与事件信息，"
        "规划一个有序的意图序列，每个意图是对下列工具之一的调用。\n"
        f"工具库：\n{tools}\n"
        f"取值范围：{START}∈{{{'、'.join(ADMISSIBLE[START])}}}；{END}∈{{{'、'.join(ADMISSIBLE[END])}}}；"
        f"{RANGE}∈{{{'、'.join(ADMISSIBLE[RANGE])}}}；{TAG}∈{{{'、'.join(ADMISSIBLE[TAG])}}}。\n"
        "规则：只用工具库中的工具和取值，起点终点不写POI名称；库外标签映射到最接近的标签"
        "（便利店、超市→购物；咖啡、饮品、甜品、小吃、餐厅→美食；公园、度假村、风景→景点；KTV、酒吧→休闲娱乐）；"
        "tool_1、tool_2、tool_4 合计最多出现一次；第一个意图是最迫切的需求，后续意图承接或并列；"
        "序列需符合时间与地点，长度大于3。\n"
        "先输出<THOUGHT>，其中依次包含<CONTEXT>、<STRATEGY>和与意图个数相同的<STEP_i>，再输出JSON数组。"
    )


SystemPrompt = Literal["full", "short", "none"]


@dataclass(frozen=True)
class PromptOptions:
    """How much of a row goes into the prompt. ``None`` keeps everything (the released prompt)."""

    system: SystemPrompt = "full"
    max_short_events: int | None = None  # keep the most recent N short-term events
    max_long_items: int | None = None    # keep the N most frequent long-term items

    @classmethod
    def named(cls, name: str) -> "PromptOptions":
        """Named presets: ``released`` (everything), ``compact``, ``minimal`` and ``tiny`` (CPU-scale models)."""
        presets = {"released": cls(), "compact": cls("short", 4, 3), "minimal": cls("none", 2, 2),
                   "tiny": cls("none", 1, 1)}
        if name not in presets:
            raise ValueError(f"unknown prompt preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]


def _short_events(text: str, keep: int | None) -> str:
    """Keep the most recent ``keep`` events (events are time-ordered, each starts with 在)."""
    items = EVENT_SPLIT.split(text) if text else []
    return text if keep is None or len(items) <= keep else ", ".join(items[-keep:])


def _long_items(text: str, keep: int | None) -> str:
    items = text.split(" , ") if text else []
    return text if keep is None or len(items) <= keep else " , ".join(items[:keep])


def user_message(row: GsisrRow, options: PromptOptions = PromptOptions()) -> str:
    """The released user-message layout for one row (ids and labels are left out)."""
    c = row.cells
    lines = ["", "##基础画像"]
    for i in range(1, 15):
        if i in (7, 9):
            continue  # feat_6+7 and feat_8+9 are glued onto one line each
        value = c[f"profile_feat_{i}"] + (c[f"profile_feat_{i + 1}"] if i in (6, 8) else "")
        lines.append(f"-profile_{i}：{value}")
    lines += ["", "##历史行为",
              f"-短期行为序列：{_short_events(c['short_term_behavior_seq'], options.max_short_events)}",
              f"-长期行为：{_long_items(c['long_term_behavior'], options.max_long_items)}",
              "", "#当前上下文", "##时空信息",
              f"-当前时间：{c['currenttime']}", f"-是否周末：{c['weekendflag']}", f"-是否节假日：{c['holidayflag']}",
              f"-当前城市：{c['current_city']}{c['current_district']}",
              f"-当前POI名称：{c['current_poi_name']}", f"-当前POI类型：{c['current_tag']}",
              "##事件信息", f"-trigger_1：{c['trigger_1']}",
              f"-trigger_2：{c['trigger_2']}{c['trigger_3']}{c['trigger_4']}",
              f"-trigger_5：{c['trigger_5']}", f"-trigger_6：{c['trigger_6']}", f"-trigger_7：{c['trigger_7']}"]
    return "\n".join(lines)


def build_messages(row: GsisrRow, options: PromptOptions = PromptOptions()) -> list[dict[str, str]]:
    """[system?, user] messages for one row."""
    system = {"full": _system_full(), "short": SYSTEM_SHORT, "none": ""}[options.system]
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": user_message(row, options)}]


def render_chatml(messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """ChatML text as Qwen3's template renders it with thinking disabled and the empty
    ``<think>`` block stripped: the prompt ends at ``<|im_start|>assistant\\n``."""
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def build_prompt(row: GsisrRow, options: PromptOptions = PromptOptions()) -> str:
    """The full ChatML prompt for one row."""
    return render_chatml(build_messages(row, options))
