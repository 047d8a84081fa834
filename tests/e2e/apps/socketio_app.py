#!/usr/bin/python3
"""A python-socketio backend shaped like Open WebUI (Engine.IO v4 at /ws/socket.io/).

Run either way:
  python3 socketio_app.py [--port 0] [--name NAME] [--redis redis://127.0.0.1:6379/0]
                          [--cors-origin URL ...]          prints "PORT <n>" first on stdout
  SIO_NAME=a SIO_REDIS=redis://... python3 -m uvicorn socketio_app:app --port 0
(with --redis, python-socketio's AsyncRedisManager, from Debian's python3-redis,
fans server-to-client events out across instances, as Open WebUI does).

Socket.IO events (client -> server; each answers through its ack):
  echo(data)        acks data back and emits 'echo' with it
  whoami()          acks {"name": NAME, "sid": sid, "pid": pid}
  broadcast(data)   emits 'broadcast' {"from": NAME, "data": data} to every client of every
                    instance (through Redis when --redis is set); acks "ok"
  join(room), to_room({"room": r, "data": d})
On connect the server emits 'hello' {"name": NAME, "sid": sid}.

HTTP routes (any other path):
  /health  200 {"status": true}
  /ready   200 {"status": true}
  /id      NAME
  /stats   JSON: connects, disconnects, connected, events handled
  else     404
CORS: without --cors-origin every Origin is accepted ('*'); with it, only those
(the WebSocket of a foreign Origin is refused, as Open WebUI does).
"""
import argparse
import json
import os
import socket
import sys

import socketio

NAME = os.environ.get("SIO_NAME", "sio")
REDIS = os.environ.get("SIO_REDIS", "")
CORS = [o for o in os.environ.get("SIO_CORS", "").split(",") if o] or "*"
STATS = {"connects": 0, "disconnects": 0, "connected": 0, "events": 0}


def build(name, redis_url, cors):
    global NAME
    NAME = name
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    kwargs = {"client_manager": manager} if manager else {}
    sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins=cors,
                               ping_interval=25, ping_timeout=20, **kwargs)

    @sio.event
    async def connect(sid, environ, auth=None):
        STATS["connects"] += 1
        STATS["connected"] += 1
        await sio.emit("hello", {"name": NAME, "sid": sid}, to=sid)

    @sio.event
    async def disconnect(sid):
        STATS["disconnects"] += 1
        STATS["connected"] -= 1

    @sio.event
    async def echo(sid, data=None):
        STATS["events"] += 1
        await sio.emit("echo", data, to=sid)
        return data

    @sio.event
    async def whoami(sid, data=None):
        STATS["events"] += 1
        return {"name": NAME, "sid": sid, "pid": os.getpid()}

    @sio.event
    async def broadcast(sid, data=None):
        STATS["events"] += 1
        await sio.emit("broadcast", {"from": NAME, "data": data})
        return "ok"

    @sio.event
    async def join(sid, room):
        STATS["events"] += 1
        sio.enter_room(sid, room)
        return "ok"

    @sio.event
    async def to_room(sid, data):
        STATS["events"] += 1
        await sio.emit("room", {"from": NAME, "data": data.get("data")}, room=data.get("room"))
        return "ok"

    async def http_app(scope, receive, send):
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path in ("/health", "/ready"):
            status, body, ctype = 200, b'{"status": true}\n', b"application/json"
        elif path == "/id":
            status, body, ctype = 200, NAME.encode(), b"text/plain"
        elif path == "/stats":
            status, body, ctype = 200, json.dumps(STATS).encode(), b"application/json"
        else:
            status, body, ctype = 404, b'{"detail": "Not Found"}\n', b"application/json"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype),
                                (b"content-length", str(len(body)).encode()),
                                (b"x-upstream-name", NAME.encode())]})
        await send({"type": "http.response.body", "body": body})

    return socketio.ASGIApp(sio, other_asgi_app=http_app, socketio_path="/ws/socket.io")


if __name__ != "__main__":  # imported by uvicorn: configured from the environment
    app = build(NAME, REDIS, CORS)


def main():
    global app  # noqa: PLW0603
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
    ap.add_argument("--redis", default=REDIS, help="redis://host:port/db for cross-instance fan-out")
    ap.add_argument("--cors-origin", action="append", default=None,
                    help="allowed Origin (repeatable); default: any")
    args = ap.parse_args()
    app = build(args.name, args.redis, args.cors_origin or "*")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    print("PORT %d" % sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False,
                            ws="websockets",
                            ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
                            ssl_ca_certs=args.ssl_ca_certs, ssl_cert_reqs=args.ssl_cert_reqs)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
