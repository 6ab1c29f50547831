"""Small synthetic rows and plans for tests (never released rows), and a loopback chat server."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gplan_lib.core.data import COLUMNS, GsisrRow
from gplan_lib.synthesis.teacher import ExpertTeacher
from gplan_lib.synthesis.world import simulate_row

#: A Qwen3 small enough for unit tests.
TINY_ARCH = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                 intermediate_size=64, max_position_embeddings=1024)

PLAN_OK = ('[{"工具名称":"tool_1","起始位置":"当前位置","终点位置":"订单目的地"},{"工具名称":"tool_8"},'
           '{"工具名称":"tool_5","起始位置":"订单目的地","空间范围":"附近","tag":"美食"},{"工具名称":"tool_9"}]')


def teacher_rows(seed: int, n: int) -> list[GsisrRow]:
    """``n`` simulated rows labelled by the offline teacher (with reasoning)."""
    teacher = ExpertTeacher()
    return [simulate_row(seed, i).replace(raw_labels=teacher.demonstrate(simulate_row(seed, i)).label()) for i in range(n)]


def make_row(**cells: str) -> GsisrRow:
    """A small valid synthetic row (never a released one), with some cells overridden."""
    base = dict.fromkeys(COLUMNS, "")
    base.update({
        "id": "u1", "profile_feat_1": "1", "profile_feat_2": "5", "profile_feat_5": "杭州市",
        "profile_feat_6": "p_1", "profile_feat_7": "杭州市西湖区",
        "short_term_behavior_seq": "在2月1日周日9点act_1了位于本地公园的p_2, 在2月2日周一10点act_7了位于异地行中高铁站的p_3",
        "long_term_behavior": "公园的p_2act_8了5次 , 商场的p_4act_8了3次",
        "currenttime": "2026-03-01 18:30:00", "holidayflag": "0", "weekendflag": "1",
        "current_poi_name": "p_5", "current_tag": "高铁站", "current_city": "上海市", "current_district": "徐汇区",
        "trigger_1": "酒店", "trigger_2": "上海市", "trigger_3": "黄浦区", "trigger_4": "p_6",
        "trigger_6": "2026-03-01 00:00:00", "trigger_7": "2026-03-02 00:00:00",
        "raw_labels": PLAN_OK,
    })
    base.update(cells)
    return GsisrRow(base)


class FakeServer:
    """Replies with the offline teacher's label for the last user turn, or with scripted failures."""

    def __init__(self, fail_first: int = 0, status: int = 500, reply: str | None = None, reply_fn=None):
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.paths: list[str] = []
        self.fail_first, self.status, self.reply, self.reply_fn = fail_first, status, reply, reply_fn
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                outer.headers.append(dict(self.headers))
                outer.paths.append(self.path)
                if len(outer.requests) <= outer.fail_first:
                    self.send_response(outer.status)
                    self.end_headers()
                    self.wfile.write(b'{"error": "busy"}')
                    return
                text = (outer.reply_fn(body["messages"]) if outer.reply_fn else
                        outer.reply if outer.reply is not None else PLAN_OK)
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class RawServer:
    """A loopback server that answers each connection with the next scripted raw HTTP reply (bytes),
    optionally trickled one byte every ``trickle`` seconds; records each request's head and body."""

    def __init__(self, replies: list[bytes], trickle: float = 0.0):
        import socket
        self.replies, self.trickle, self.requests = list(replies), trickle, []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        import time
        while self.replies:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, body = data.split(b"\r\n\r\n", 1)
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append((head.decode("latin-1"), body))
                reply = self.replies.pop(0)
                try:
                    if self.trickle:
                        for i in range(len(reply)):
                            conn.sendall(reply[i:i + 1])
                            time.sleep(self.trickle)
                    else:
                        conn.sendall(reply)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def http_reply(status: str, body: bytes = b"", **headers: str) -> bytes:
    """A raw HTTP/1.1 reply with Content-Length (and the given headers, '_' read as '-')."""
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close",
             *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chat_body(content) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()


def raw_csv(path, rows):
    """Rows written as a GSISR CSV without the data layer's checks (to plant cells it would refuse to write)."""
    import csv
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        w.writerows([r.cells[c] for c in COLUMNS] for r in rows)
    return path
