"""A client for OpenAI-compatible chat-completions servers (e.g. vLLM serving Qwen3), for the LLM
teacher at full scale and the LLM judge (Sec. 5.3).

Written on the standard library (``http.client``): the protocol is a single POST, and keeping an SDK
out of the default install lets CI test the client against a loopback server. What it guarantees:

* credentials are never stored or printed: the API key is read from the environment at call time and
  sent only to ``base_url``'s host (a redirect is never followed: it is an error); a ``user:password@`` in
  the URL is sent as HTTP Basic authentication, and the URL every message, manifest and cache key shows
  (``display_url``) has them and any query-string values removed; a server's error body, which may echo
  credentials, is not quoted;
* every try has a whole-request deadline, ``timeout`` seconds from the moment it starts, covering the
  connection, the status line, the headers and the body: a watcher breaks the connection when it passes,
  however slowly the server trickles bytes; a reply over ``max_reply_bytes`` is an error, not buffered;
* retries with exponential back-off on network and protocol errors, 429 and 5xx, waiting at least what a
  ``Retry-After`` header asks (up to ``max_retry_after``);
* Ctrl-C or SIGTERM during ``complete_many`` cancels every request in flight and every retry wait within
  a fraction of a second, and the exception reaches the caller (the CLI exits 130);
* an on-disk cache keyed by the server, model, messages and parameters; a reply is cached only when it
  is a string the caller keeps (``validate`` passes, and ``keep`` if given); each writer writes its own
  temporary file; an unreadable cache file counts as a miss.
Concurrency with a thread pool.
"""
from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import http.client
import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from tqdm.auto import tqdm

from .files import write_json

Messages = list[dict[str, str]]
Validator = Callable[[str], Any]  # raises ValueError on a reply that must not be used or cached


class LLMError(RuntimeError):
    """A request that failed for good (after retries, or a client error that retrying cannot fix)."""


class Cancelled(LLMError):
    """Requests given up because the caller was interrupted (Ctrl-C, SIGTERM)."""


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
    max_reply_bytes: int = 4 << 20      # a reply's body beyond this is an error (a plan is a few KB)
    concurrency: int = 8
    cache_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other request fields, e.g. {"top_p": 1}

    def __post_init__(self):
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url must be an http(s) URL with a host, got {redact(self.base_url)!r}")
        self._stop = threading.Event()

    @property
    def display_url(self) -> str:
        """``base_url`` without credentials: what messages, manifests and cache keys show."""
        return redact(self.base_url)

    def _payload(self, messages: Messages) -> dict[str, Any]:
        return {"model": self.model, "messages": messages, "temperature": self.temperature,
                "max_tokens": self.max_tokens, **self.extra}

    def _cache_path(self, payload: dict[str, Any]) -> Path | None:
        if self.cache_dir is None:
            return None
        keyed = {"server": self.display_url.rstrip("/"), "request": payload}
        key = hashlib.sha256(json.dumps(keyed, ensure_ascii=False, sort_keys=True).encode()).hexdigest()
        return Path(self.cache_dir) / key[:2] / f"{key}.json"

    def _try(self, payload: dict[str, Any]) -> str:
        """One POST under a whole-request deadline; the reply's content, or _Retry / LLMError / Cancelled."""
        base = urlsplit(self.base_url)
        target = base.path.rstrip("/") + "/chat/completions" + (f"?{base.query}" if base.query else "")
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if base.username is not None:  # user:password@ in the URL: HTTP Basic, never stored or shown
            pair = f"{unquote(base.username)}:{unquote(base.password or '')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        elif key:
            headers["Authorization"] = f"Bearer {key}"
        cls = http.client.HTTPSConnection if base.scheme == "https" else http.client.HTTPConnection
        conn = cls(base.hostname, base.port, timeout=self.timeout)
        deadline, done, broken = time.monotonic() + self.timeout, threading.Event(), threading.Event()
        threading.Thread(target=self._watch, args=(conn, deadline, done, broken), daemon=True).start()
        failure = None
        try:
            conn.request("POST", target, body=json.dumps(payload).encode(), headers=headers)
            resp = conn.getresponse()
            body = bytearray()
            while chunk := resp.read1(65536):
                body += chunk
                if len(body) > self.max_reply_bytes:
                    raise LLMError(f"{self.display_url}: the reply exceeds {self.max_reply_bytes >> 20} MiB; stopped "
                                   "reading it")
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, bad status line, broken by the watcher
            failure = exc
        finally:
            done.set()
            conn.close()
        if self._stop.is_set():  # a connection the watcher broke can also end in an early, silent EOF
            raise Cancelled(f"{self.display_url}: request cancelled")
        if broken.is_set() or isinstance(failure, TimeoutError):
            raise _Retry(f"no complete reply within {self.timeout:g} s")
        if failure is not None:
            raise _Retry(type(failure).__name__)
        if 300 <= resp.status < 400:
            raise LLMError(f"{self.display_url}: HTTP {resp.status} redirect; redirects are not followed (the API key "
                           "would go to another address)")
        if resp.status == 429 or resp.status >= 500:
            raise _Retry(f"HTTP {resp.status} {resp.reason}", retry_after(resp.getheader("Retry-After")))
        if resp.status != 200:  # the body is not quoted: a server may echo the request's credentials
            raise LLMError(f"{self.display_url}: HTTP {resp.status} {resp.reason} (the reply body is not shown)")
        try:
            content = json.loads(body)["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError, ValueError, RecursionError) as exc:
            raise LLMError(f"{self.display_url}: malformed response ({type(exc).__name__})") from None
        if not isinstance(content, str):
            raise LLMError(f"{self.display_url}: the reply's content is {type(content).__name__}, not text")
        return content

    def _watch(self, conn: http.client.HTTPConnection, deadline: float, done: threading.Event,
               broken: threading.Event) -> None:
        """Break ``conn`` when the try's deadline passes or the client is cancelled, unless it is ``done``."""
        while not done.wait(0.05):
            if self._stop.is_set() or time.monotonic() >= deadline:
                broken.set()
                sock = conn.sock  # (read once: the request's thread may close it meanwhile)
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                return

    def _post(self, payload: dict[str, Any]) -> str:
        last = ""
        for attempt in range(self.max_retries + 1):
            if self._stop.is_set():
                raise Cancelled(f"{self.display_url}: request cancelled")
            try:
                return self._try(payload)
            except _Retry as exc:
                last = str(exc)
                if attempt < self.max_retries:
                    self._stop.wait(max(self.backoff * 2 ** attempt, min(exc.wait, self.max_retry_after)))
        raise LLMError(f"{self.display_url}: failed after {self.max_retries + 1} tries ({last})")

    def complete(self, messages: Messages, validate: Validator | None = None,
                 keep: Callable[[str], bool] | None = None) -> str:
        """The assistant's reply to ``messages`` (from the cache when the same request was made to the
        same server). ``validate`` raises ValueError on a reply that must not be used: it is then an
        LLMError and nothing is cached. ``keep``: whether a usable reply is worth caching (the teacher keeps
        only labels that pass the rule filter)."""
        payload = self._payload(messages)
        path = self._cache_path(payload)
        if path is not None and path.is_file():
            try:
                text = json.loads(path.read_text(encoding="utf-8"))["response"]
                if isinstance(text, str):
                    if validate is not None:
                        validate(text)
                    return text
            except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
                pass  # truncated, foreign or no longer valid: ask again and overwrite
        text = self._post(payload)
        if validate is not None:
            try:
                validate(text)
            except (ValueError, RecursionError) as exc:
                raise LLMError(f"{self.display_url}: unusable reply ({str(exc)[:300]})") from None
        if path is not None and (keep is None or keep(text)):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, {"request": payload, "response": text})  # a temporary file of this writer's own
        return text

    def complete_many(self, batch: Sequence[Messages], desc: str = "llm",
                      validate: Validator | Sequence[Validator | None] | None = None,
                      keep: Callable[[str], bool] | None = None) -> list[str]:
        """Replies for many requests, ``concurrency`` at a time, in input order; ``validate`` is one
        validator for all or one per request. An interruption (or a failed request) cancels the rest:
        requests in flight are broken off and retry waits end, so the caller leaves within a second."""
        checks = list(validate) if isinstance(validate, (list, tuple)) else [validate] * len(batch)
        self._stop.clear()
        pool = ThreadPoolExecutor(self.concurrency)
        try:
            futures = [pool.submit(self.complete, m, c, keep) for m, c in zip(batch, checks, strict=True)]
            return [f.result() for f in tqdm(futures, desc=desc)]
        except BaseException:
            self._stop.set()  # the watchers break every connection; _post stops retrying
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def redact(url: str) -> str:
    """``url`` without credentials: no user or password, every query-string value replaced by ``***``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "<an unreadable URL>"
    query = "&".join(f"{quote(k)}=***" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return parts._replace(netloc=netloc, query=query, fragment="").geturl()
