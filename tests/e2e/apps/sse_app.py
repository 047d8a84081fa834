#!/usr/bin/python3
"""A streaming ASGI backend (what Open WebUI's chat completions look like on the wire).

Run either way:
  python3 sse_app.py [--port 0] [--name NAME]      prints "PORT <n>" first on stdout
  python3 -m uvicorn sse_app:app --port 0          uvicorn logs "Uvicorn running on http://127.0.0.1:<n>"
(the first form binds the socket itself, so the port is known before uvicorn logs anything).

Routes (GET or POST; a POST body is read and ignored):
  /health       200 {"status": true}
  /id           the instance's name (env SSE_APP_NAME or --name)
  /sse?n=5&interval_ms=100&first_delay_ms=0&pad=0
                text/event-stream: n frames `data: {"i": k, "t": <unix time>, "pad": "..."}\\n\\n`,
                interval_ms apart, after first_delay_ms of silence (a thinking model),
                then `data: [DONE]\\n\\n`. Also at /api/chat/completions and
                /v1/chat/completions.
  /ndjson?n=5&interval_ms=100&first_delay_ms=0
                application/x-ndjson: n lines {"i": k, "done": false} then {"done": true}.
                Also at /ollama/api/chat and /ollama/api/generate.
  /digest       {"bytes": n, "sha256": hex} of the request body read
  /stats        JSON counters: streams started, completed, cancelled (client went away)
Each frame is sent as its own ASGI body message, so a proxy that buffers shows up
as frames arriving late (compare "t" with the arrival time).
"""
import argparse
import asyncio
import hashlib
import json
import os
import socket
import sys
import time
import urllib.parse

NAME = os.environ.get("SSE_APP_NAME", "sse")
STATS = {"streams_started": 0, "streams_completed": 0, "streams_cancelled": 0}


async def _drain_body(receive):
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return False
        if not msg.get("more_body"):
            return True


async def _send_simple(send, status, body, ctype=b"application/json"):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype),
                            (b"content-length", str(len(body)).encode()),
                            (b"x-upstream-name", NAME.encode())]})
    await send({"type": "http.response.body", "body": body})


async def _watch_disconnect(receive, flag):
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            flag.set()
            return


async def _stream(send, receive, ctype, frames, done, q):
    n = min(int(q.get("n", 5)), 100_000)
    interval = int(q.get("interval_ms", 100)) / 1000.0
    first_delay = int(q.get("first_delay_ms", 0)) / 1000.0
    pad = "x" * min(int(q.get("pad", 0)), 1 << 20)
    STATS["streams_started"] += 1
    gone = asyncio.Event()
    watcher = asyncio.ensure_future(_watch_disconnect(receive, gone))
    try:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", ctype),
                                (b"cache-control", b"no-cache"),
                                (b"x-accel-buffering", b"no"),
                                (b"x-upstream-name", NAME.encode())]})

        async def pause(seconds):
            if seconds > 0:
                try:
                    await asyncio.wait_for(gone.wait(), seconds)
                except asyncio.TimeoutError:
                    pass
            return gone.is_set()

        if await pause(first_delay):
            STATS["streams_cancelled"] += 1
            return
        for i in range(n):
            if i and await pause(interval):
                STATS["streams_cancelled"] += 1
                return
            await send({"type": "http.response.body", "body": frames(i, pad), "more_body": True})
        await send({"type": "http.response.body", "body": done, "more_body": False})
        STATS["streams_completed"] += 1
    except (OSError, asyncio.CancelledError):
        STATS["streams_cancelled"] += 1
        raise
    finally:
        watcher.cancel()


def _sse_frame(i, pad):
    obj = {"i": i, "t": time.time(), "choices": [{"delta": {"content": "tok%d " % i}}]}
    if pad:
        obj["pad"] = pad
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _ndjson_line(i, pad):
    obj = {"i": i, "t": time.time(), "done": False, "message": {"content": "tok%d " % i}}
    if pad:
        obj["pad"] = pad
    return json.dumps(obj).encode() + b"\n"


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    q = dict(urllib.parse.parse_qsl(scope.get("query_string", b"").decode()))
    if path in ("/sse", "/api/chat/completions", "/v1/chat/completions"):
        if scope["method"] == "POST" and not await _drain_body(receive):
            return
        return await _stream(send, receive, b"text/event-stream; charset=utf-8",
                             _sse_frame, b"data: [DONE]\n\n", q)
    if path in ("/ndjson", "/ollama/api/chat", "/ollama/api/generate"):
        if scope["method"] == "POST" and not await _drain_body(receive):
            return
        return await _stream(send, receive, b"application/x-ndjson", _ndjson_line,
                             json.dumps({"done": True}).encode() + b"\n", q)
    if path == "/digest":
        h, n = hashlib.sha256(), 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            h.update(msg.get("body", b""))
            n += len(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        return await _send_simple(send, 200, json.dumps({"bytes": n, "sha256": h.hexdigest()}).encode())
    await _drain_body(receive)
    if path == "/health":
        return await _send_simple(send, 200, b'{"status": true}\n')
    if path == "/id":
        return await _send_simple(send, 200, NAME.encode(), b"text/plain")
    if path == "/stats":
        return await _send_simple(send, 200, json.dumps(STATS).encode())
    return await _send_simple(send, 404, b'{"detail": "Not Found"}\n')


def main():
    global NAME
    import uvicorn
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--name", default=NAME)
    # HTTPS (uvicorn's own options): the backend of tests/e2e/test_backend_tls.py.
    ap.add_argument("--ssl-certfile")
    ap.add_argument("--ssl-keyfile")
    ap.add_argument("--ssl-ca-certs", help="CAs for client certificates")
    ap.add_argument("--ssl-cert-reqs", type=int, default=0, help="2: a client certificate is required")
    args = ap.parse_args()
    NAME = args.name
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    print("PORT %d" % sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False,
                            ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
                            ssl_ca_certs=args.ssl_ca_certs, ssl_cert_reqs=args.ssl_cert_reqs)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
