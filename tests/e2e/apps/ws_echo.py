#!/usr/bin/python3
"""A WebSocket echo backend (python3-websockets 10.4) for tether's e2e tests.

Usage: python3 ws_echo.py [--port 0] [--host 127.0.0.1] [--name NAME]
                          [--close-code N] [--ping-interval S] [--max-size BYTES]
Prints "PORT <n>" as the first stdout line. Plain HTTP requests (no Upgrade)
to /health answer 200 {"status": true}; to /id 200 and the text NAME; to
anything else 426.

Per connection, by request path:
  /            echo every text and binary message as it came (any other path too)
  /id          first sends the text NAME, then echoes
  /headers     first sends the upgrade request's headers as JSON [[name, value], ...], then echoes
  /close/<c>   closes at once with code <c> (reason "bye")
  ?close=<c>   echoes the first message, then closes with code <c>
With --close-code N every connection closes with N after its first echo.
Control frames: pings from the client are answered with pongs (websockets does
this); --ping-interval S makes the server ping every S seconds (0: never).
A text message "close:<code>" makes the server close with that code.
"""
import argparse
import asyncio
import http
import json
import sys
import urllib.parse

import websockets


HEALTH = {"status": 200}  # a text message "health:<code>" changes what /health answers


async def main_async(args):
    async def process_request(path, headers):
        if "upgrade" not in headers.get("Connection", "").lower():
            if urllib.parse.urlsplit(path).path == "/health":
                return http.HTTPStatus(HEALTH["status"]), [("Content-Type", "application/json")], \
                    b'{"status": true}\n'
            if urllib.parse.urlsplit(path).path == "/id":
                return http.HTTPStatus.OK, [("Content-Type", "text/plain")], args.name.encode()
            return http.HTTPStatus.UPGRADE_REQUIRED, [("Content-Type", "text/plain")], \
                b"websocket only\n"
        return None

    async def handler(ws, path):
        url = urllib.parse.urlsplit(path)
        q = dict(urllib.parse.parse_qsl(url.query))
        close_after = int(q["close"]) if "close" in q else args.close_code
        if url.path.startswith("/close/"):
            await ws.close(int(url.path.split("/")[2]), "bye")
            return
        if url.path == "/id":
            await ws.send(args.name)
        elif url.path == "/headers":
            await ws.send(json.dumps([[k, v] for k, v in ws.request_headers.raw_items()]))
        try:
            async for msg in ws:
                if isinstance(msg, str) and msg.startswith("close:"):
                    await ws.close(int(msg[6:]), "asked")
                    return
                if isinstance(msg, str) and msg.startswith("health:"):
                    HEALTH["status"] = int(msg[7:])
                await ws.send(msg)
                if close_after:
                    await ws.close(close_after, "bye")
                    return
        except websockets.ConnectionClosed:
            pass

    ping = args.ping_interval if args.ping_interval > 0 else None
    async with websockets.serve(handler, args.host, args.port, process_request=process_request,
                                ping_interval=ping, ping_timeout=ping, max_size=args.max_size,
                                compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print("PORT %d" % port, flush=True)
        await asyncio.Future()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--name", default="ws")
    ap.add_argument("--close-code", type=int, default=0)
    ap.add_argument("--ping-interval", type=float, default=0)
    ap.add_argument("--max-size", type=int, default=64 << 20)
    args = ap.parse_args()
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
