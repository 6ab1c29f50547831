"""A client for OpenAI-compatible chat-completions servers (e.g. vLLM serving Qwen3), for the LLM
teacher at full scale and the LLM judge (Sec. 5.3).

Written on the standard library: the protocol is a single POST, and keeping an SDK out of the
default install lets CI test the client against a loopback server. Concurrency with a thread pool,
retries with exponential back-off on network errors, 429 and 5xx, and an on-disk cache keyed by the
request (model, messages, parameters). The API key is read from the environment at call time and
never stored: not in the cache, not in errors, not in results.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

Messages = list[dict[str, str]]


class LLMError(RuntimeError):
    """A request that failed for good (after retries, or a client error that retrying cannot fix)."""


@dataclass
class ChatClient:
    base_url: str                       # e.g. http://127.0.0.1:8000/v1
    model: str
    api_key_env: str = "OPENAI_API_KEY"  # name of the environment variable holding the key (may be unset)
    temperature: float = 0.0
    max_tokens: int = 1024
    timeout: float = 120.0
    max_retries: int = 4
    backoff: float = 0.5                # seconds; doubled after each failed try
    concurrency: int = 8
    cache_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other request fields, e.g. {"top_p": 1}

    def _payload(self, messages: Messages) -> dict[str, Any]:
        return {"model": self.model, "messages": messages, "temperature": self.temperature,
                "max_tokens": self.max_tokens, **self.extra}

    def _cache_path(self, payload: dict[str, Any]) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()).hexdigest()
        return Path(self.cache_dir) / key[:2] / f"{key}.json"

    def _post(self, payload: dict[str, Any]) -> str:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.base_url.rstrip("/") + "/chat/completions",
                                     data=json.dumps(payload).encode(), headers=headers, method="POST")
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    body = json.loads(resp.read())
                return body["choices"][0]["message"]["content"]
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}: {exc.read()[:200]!r}"
                if exc.code != 429 and exc.code < 500:
                    raise LLMError(f"{self.base_url}: {last}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            except (KeyError, IndexError, ValueError) as exc:
                raise LLMError(f"{self.base_url}: malformed response ({exc})") from None
            if attempt < self.max_retries:
                time.sleep(self.backoff * 2 ** attempt)
        raise LLMError(f"{self.base_url}: failed after {self.max_retries + 1} tries ({last})")

    def complete(self, messages: Messages) -> str:
        """The assistant's reply to ``messages`` (from the cache when the same request was made)."""
        payload = self._payload(messages)
        path = self._cache_path(payload)
        if path is not None and path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))["response"]
        text = self._post(payload)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"request": payload, "response": text}, ensure_ascii=False), encoding="utf-8")
        return text

    def complete_many(self, batch: Sequence[Messages], desc: str = "llm") -> list[str]:
        """Replies for many requests, ``concurrency`` at a time, in input order."""
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(tqdm(pool.map(self.complete, batch), total=len(batch), desc=desc))
