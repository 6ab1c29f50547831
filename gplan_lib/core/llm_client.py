"""A client for OpenAI-compatible chat-completions servers (e.g. vLLM serving Qwen3), for the LLM
teacher at full scale and the LLM judge (Sec. 5.3).

Written on the standard library (``http.client``): the protocol is a single POST, and keeping an SDK
out of the default install lets CI test the client against a loopback server. What it guarantees:

* the API key is read from the environment at call time and sent only to ``base_url``'s host: a
  redirect is never followed (it is an error), and the key is never stored - not in the cache, not in
  errors (a server's error body, which may echo it, is not quoted either);
* every try has a whole-request deadline (``timeout`` seconds for connect, send and the full body, so
  a server that trickles its reply cannot hold a worker); retries with exponential back-off on network
  and protocol errors, 429 and 5xx, waiting at least what a ``Retry-After`` header asks (up to
  ``max_retry_after``);
* an on-disk cache keyed by the server, model, messages and parameters; a reply is cached only when
  it is a string and passes the caller's ``validate``; an unreadable cache file counts as a miss.
Concurrency with a thread pool.
"""
from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from tqdm.auto import tqdm

Messages = list[dict[str, str]]
Validator = Callable[[str], Any]  # raises ValueError on a reply that must not be used or cached


class LLMError(RuntimeError):
    """A request that failed for good (after retries, or a client error that retrying cannot fix)."""


class _Retry(Exception):
    """A failed try worth repeating, with the least wait the server asked for."""

    def __init__(self, why: str, wait: float = 0.0):
        super().__init__(why)
        self.wait = wait


def retry_after(value: str | None) -> float:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date; 0 if absent or bad)."""
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return 0.0


@dataclass
class ChatClient:
    base_url: str                       # e.g. http://127.0.0.1:8000/v1
    model: str
    api_key_env: str = "OPENAI_API_KEY"  # name of the environment variable holding the key (may be unset)
    temperature: float = 0.0
    max_tokens: int = 1024
    timeout: float = 120.0              # seconds for one whole try: connect, send, read the full reply
    max_retries: int = 4
    backoff: float = 0.5                # seconds; doubled after each failed try
    max_retry_after: float = 60.0       # the longest Retry-After honoured
    concurrency: int = 8
    cache_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other request fields, e.g. {"top_p": 1}

    def __post_init__(self):
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url must be an http(s) URL with a host, got {self.base_url!r}")

    def _payload(self, messages: Messages) -> dict[str, Any]:
        return {"model": self.model, "messages": messages, "temperature": self.temperature,
                "max_tokens": self.max_tokens, **self.extra}

    def _cache_path(self, payload: dict[str, Any]) -> Path | None:
        if self.cache_dir is None:
            return None
        keyed = {"server": self.base_url.rstrip("/"), "request": payload}
        key = hashlib.sha256(json.dumps(keyed, ensure_ascii=False, sort_keys=True).encode()).hexdigest()
        return Path(self.cache_dir) / key[:2] / f"{key}.json"

    def _try(self, payload: dict[str, Any]) -> str:
        """One POST under a whole-request deadline; the reply's content, or _Retry / LLMError."""
        url = urlsplit(self.base_url.rstrip("/") + "/chat/completions")
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        deadline = time.monotonic() + self.timeout
        cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = cls(url.hostname, url.port, timeout=self.timeout)
        try:
            conn.request("POST", url.path + (f"?{url.query}" if url.query else ""), body=json.dumps(payload).encode(),
                         headers=headers)
            resp = conn.getresponse()
            body = bytearray()
            while chunk := self._read(conn, resp, deadline):
                body += chunk
        except TimeoutError:
            raise _Retry(f"no complete reply within {self.timeout:g} s") from None
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, bad status line, ...
            raise _Retry(f"{type(exc).__name__}") from None
        finally:
            conn.close()
        if 300 <= resp.status < 400:
            raise LLMError(f"{self.base_url}: HTTP {resp.status} redirect to {resp.getheader('Location')!r}; redirects "
                           "are not followed (the API key would go to another address)")
        if resp.status == 429 or resp.status >= 500:
            raise _Retry(f"HTTP {resp.status} {resp.reason}", retry_after(resp.getheader("Retry-After")))
        if resp.status != 200:  # the body is not quoted: a server may echo the request's credentials
            raise LLMError(f"{self.base_url}: HTTP {resp.status} {resp.reason} (the reply body is not shown)")
        try:
            content = json.loads(body)["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise LLMError(f"{self.base_url}: malformed response ({type(exc).__name__}: {exc})") from None
        if not isinstance(content, str):
            raise LLMError(f"{self.base_url}: the reply's content is {type(content).__name__}, not text")
        return content

    def _read(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, deadline: float) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if conn.sock is not None:
            conn.sock.settimeout(remaining)
        return resp.read1(65536)

    def _post(self, payload: dict[str, Any]) -> str:
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                return self._try(payload)
            except _Retry as exc:
                last = str(exc)
                if attempt < self.max_retries:
                    time.sleep(max(self.backoff * 2 ** attempt, min(exc.wait, self.max_retry_after)))
        raise LLMError(f"{self.base_url}: failed after {self.max_retries + 1} tries ({last})")

    def complete(self, messages: Messages, validate: Validator | None = None) -> str:
        """The assistant's reply to ``messages`` (from the cache when the same request was made to the
        same server). ``validate`` raises ValueError on a reply that must not be used: it is then an
        LLMError and nothing is cached."""
        payload = self._payload(messages)
        path = self._cache_path(payload)
        if path is not None and path.is_file():
            try:
                text = json.loads(path.read_text(encoding="utf-8"))["response"]
                if isinstance(text, str):
                    if validate is not None:
                        validate(text)
                    return text
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                pass  # truncated, foreign or no longer valid: ask again and overwrite
        text = self._post(payload)
        if validate is not None:
            try:
                validate(text)
            except ValueError as exc:
                raise LLMError(f"{self.base_url}: unusable reply ({exc})") from None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"request": payload, "response": text}, ensure_ascii=False), encoding="utf-8")
            tmp.replace(path)  # a reader never sees half a file
        return text

    def complete_many(self, batch: Sequence[Messages], desc: str = "llm",
                      validate: Validator | Sequence[Validator | None] | None = None) -> list[str]:
        """Replies for many requests, ``concurrency`` at a time, in input order; ``validate`` is one
        validator for all or one per request."""
        checks = list(validate) if isinstance(validate, (list, tuple)) else [validate] * len(batch)
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(tqdm(pool.map(self.complete, batch, checks), total=len(batch), desc=desc))
