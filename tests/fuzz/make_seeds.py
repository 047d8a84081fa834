#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/seed-*.

    python3 tests/fuzz/make_seeds.py        (from anywhere; rewrites only seed-* files)

Seeds are starting points for libFuzzer, not tests: each is one small input in
the layout its target's header comment describes. They cover what the unit
tests cover (tests/unit/...), the cases of issue 12, the request-smuggling
mutation families that published scanners try (Transfer-Encoding obfuscation,
CL.TE and TE.CL shapes, obs-fold, bare LF, NUL and CR in values, duplicate or
signed lengths, chunk-size and extension tricks), and the families of llhttp's
own test suite (pipelining, upgrade, 1xx, HEAD, 204/304, close-delimited,
trailers, methods, versions). Crash inputs found by fuzzing are kept next to
them as regress-* files, which this script never touches.
"""

import base64
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("latin-1")
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def clear_seeds(target):
    d = os.path.join(CORPUS, target)
    if os.path.isdir(d):
        for f in os.listdir(d):
            if f.startswith("seed-"):
                os.remove(os.path.join(d, f))


# ---- HTTP/1 ---------------------------------------------------------------
# h1_fuzz.h: byte 0 options (bits 0-1 limits, 2 finish, 3-4 method answered,
# 5 shrink, 6 extra fields), byte 1 cut seed.
OPT_DEFAULT, OPT_SMALL_HEAD, OPT_SMALL_CHUNK, OPT_SMALL_BODY = 0, 1, 2, 3
OPT_FINISH = 4
ANSWER_GET, ANSWER_HEAD, ANSWER_POST, ANSWER_UPGRADE = 0 << 3, 1 << 3, 2 << 3, 3 << 3
OPT_SHRINK, OPT_EXTRA = 0x20, 0x40


def h1(target, name, msg, opts=(OPT_DEFAULT,), cut=7):
    for o in opts:
        write(target, "%s-%02x" % (name, o), bytes([o, cut]) + msg.encode("latin-1"))


SMUGGLE_BODY = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"

# Transfer-Encoding obfuscations (the families smuggling scanners permute).
TE_VARIANTS = {
    "te-plain": "Transfer-Encoding: chunked",
    "te-space-before-colon": "Transfer-Encoding : chunked",
    "te-tab-value": "Transfer-Encoding:\tchunked",
    "te-tab-before-colon": "Transfer-Encoding\t:\tchunked",
    "te-leading-space-name": " Transfer-Encoding: chunked",
    "te-space-join": "Transfer Encoding: chunked",
    "te-underscore": "Transfer_Encoding: chunked",
    "te-vtab": "Transfer-Encoding:\x0bchunked",
    "te-ff": "Transfer-Encoding:\x0cchunked",
    "te-chunked-cow": "Transfer-Encoding: chunked, cow",
    "te-cow-chunked": "Transfer-Encoding: cow, chunked",
    "te-identity-chunked": "Transfer-Encoding: identity, chunked",
    "te-comma-chunked": "Transfer-Encoding: ,chunked",
    "te-quoted": 'Transfer-Encoding: "chunked"',
    "te-aposed": "Transfer-Encoding: 'chunked'",
    "te-truncated": "Transfer-Encoding: chunk",
    "te-xchunked": "Transfer-Encoding: xchunked",
    "te-chunked1": "Transfer-Encoding: chunked1",
    "te-mixed-case": "TrAnSfEr-EnCoDiNg: cHuNkEd",
    "te-upper": "TRANSFER-ENCODING: CHUNKED",
    "te-cr-suffix": "Transfer-Encoding: chunked\r",
    "te-tab-suffix": "Transfer-Encoding: chunked\t",
    "te-nul-suffix": "Transfer-Encoding: chunked\x00",
    "te-lf-wrapped": "Transfer-Encoding:\n chunked",
    "te-crlf-folded": "Transfer-Encoding:\r\n chunked",
    "te-folded-tab": "Transfer-Encoding: x\r\n\tchunked",
    "te-twice": "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
    "te-cow-then-chunked": "Transfer-Encoding: cow\r\nTransfer-Encoding: chunked",
    "te-chunked-then-cow": "Transfer-Encoding: chunked\r\nTransfer-Encoding: cow",
    "te-empty": "Transfer-Encoding:",
    "te-bare-lf-before": "X: y\nTransfer-Encoding: chunked",
    "te-name-newline": "Transfer-Encoding\r\n: chunked",
    "te-high-byte": "Transfer-Encoding: chunked\xff",
    "te-content-encoding": "Content-Encoding: chunked",
    "te-connection": "Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked",
}

REQUESTS = {
    "get": "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
    "post-cl": "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    "post-cl-pipelined": "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "chunked-trailers": "POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\nContent-Length: 40\r\n\r\n",
    "chunked-upper-hex": "PUT /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
    "chunked-zero-padded-end": "POST /z HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n000\r\n\r\n",
    "chunked-ext-quoted": 'POST /e HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n'
                         '5;a="x \\"y\\"; z";b=c\r\nhello\r\n0\r\n\r\n',
    "chunked-ext-unbalanced": 'POST /e HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n'
                              '5;a="abc;b=c\r\nhello\r\n0\r\n\r\n',
    "chunked-ext-no-semicolon": "POST /e HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2 zz\r\naa\r\n0\r\n\r\n",
    "chunked-ext-empty": "POST /e HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;\r\naa\r\n0\r\n\r\n",
    "chunked-size-space": "POST /e HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\naa\r\n0 \r\n\r\n",
    "chunked-size-0x": "POST /e HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\naa\r\n0\r\n\r\n",
    "chunked-size-overflow": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
    "chunked-size-lf": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\naa\n0\n\n",
    "chunked-data-no-crlf": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n",
    "chunked-trailer-no-colon": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBroken\r\n\r\n",
    "chunked-trailer-folded": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n c\r\n\r\n",
    "chunked-trailer-cl": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 40\r\n\r\n",
    "chunked-long-ext": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;a=" + "x" * 300 + "\r\nx\r\n0\r\n\r\n",
    "chunked-pipelined": "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
                         "GET /n HTTP/1.1\r\nHost: a\r\n\r\n",
    "cl-te": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    "te-cl": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
    "cl-twice": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "cl-twice-same": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab",
    "cl-list": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\na",
    "cl-plus": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\na",
    "cl-minus": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\na",
    "cl-hex": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello",
    "cl-leading-zeros": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 005\r\n\r\nhello",
    "cl-space-inside": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n",
    "cl-huge": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
    "cl-space-before-colon": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello",
    "cl-underscore": "POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\nhello",
    "cl-obs-fold": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n 5\r\n\r\nhello",
    "connection-cl": "POST /a HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: 44\r\n\r\n"
                     "GET /hijacked HTTP/1.1\r\nHost: a\r\nX-Hijack: ",
    "connection-host": "GET / HTTP/1.1\r\nHost: a\r\nConnection: Host\r\n\r\n",
    "connection-close-te": "POST /a HTTP/1.1\r\nHost: a\r\nConnection: close, transfer-encoding\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "connection-keepalive-10": "GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
    "obs-fold-double": "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\tc\r\n\r\n",
    "empty-name": "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n",
    "empty-name-te": "POST / HTTP/1.1\r\nHost: a\r\n:transfer-encoding: chunked\r\n\r\n",
    "no-host": "GET / HTTP/1.1\r\n\r\n",
    "two-hosts": "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "host-empty": "GET / HTTP/1.1\r\nHost:\r\n\r\n",
    "http10-no-host": "GET / HTTP/1.0\r\n\r\n",
    "http10-te": "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "http09": "GET / HTTP/0.9\r\nHost: a\r\n\r\n",
    "http20": "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    "http12": "GET / HTTP/1.2\r\nHost: a\r\n\r\n",
    "http-lower": "GET / http/1.1\r\nHost: a\r\n\r\n",
    "no-version": "GET /\r\n\r\n",
    "pri": "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "absolute-form": "GET http://Example.com:80/x?q=1 HTTP/1.1\r\nHost: example.com:80\r\n\r\n",
    "absolute-form-no-path": "GET http://a?x HTTP/1.1\r\nHost: a\r\n\r\n",
    "absolute-form-mismatch": "GET http://a/x HTTP/1.1\r\nHost: b\r\n\r\n",
    "absolute-form-userinfo": "GET http://u@a/x HTTP/1.1\r\nHost: a\r\n\r\n",
    "absolute-form-ftp": "GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n",
    "absolute-form-https": "GET https://a:443/x HTTP/1.1\r\nHost: a:443\r\n\r\n",
    "options-asterisk": "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "get-asterisk": "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
    "connect": "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
    "fragment": "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n",
    "space-in-target": "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
    "tab-in-target": "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n",
    "double-space": "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    "bare-lf": "GET / HTTP/1.1\nHost: a\n\n",
    "bare-cr": "GET / HTTP/1.1\rHost: a\r\r",
    "cr-in-value": "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
    "nul-in-value": "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
    "high-bytes-in-value": "GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9 \xff\r\n\r\n",
    "values-trimmed": "GET / HTTP/1.1\r\nHost:   x  \r\nA:\t b \t\r\n\r\n",
    "leading-crlf": "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "invalid-method": "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
    "lower-method": "get / HTTP/1.1\r\nHost: a\r\n\r\n",
    "method-patch": "PATCH /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}",
    "method-head": "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
    "method-delete-body": "DELETE /d HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx",
    "method-search": "SEARCH / HTTP/1.1\r\nHost: a\r\n\r\n",
    "method-trace": "TRACE / HTTP/1.1\r\nHost: a\r\n\r\n",
    "upgrade-websocket": "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x85abcd\x09\x07\x0f\x08\x0e",
    "upgrade-h2c": "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
    "upgrade-with-body": "POST /u HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\nContent-Length: 2\r\n\r\nabtunnel",
    "upgrade-without-connection": "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
    "expect-100": "POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
    "many-headers": "GET / HTTP/1.1\r\nHost: a\r\n" + "".join("X-F%d: v\r\n" % i for i in range(60)) + "\r\n",
    "long-value": "GET / HTTP/1.1\r\nHost: a\r\nX: " + "a" * 400 + "\r\n\r\n",
    "cookies": "GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1; b=2\r\nCookie: c=3\r\n\r\n",
    "xff-smuggle": "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nX_Forwarded_For: 5.6.7.8\r\n\r\n",
    "truncated-head": "GET / HTTP/1.1\r\nHost: a\r\nX-Incomplete: ",
    "truncated-body": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
}

RESPONSES = {
    "cl": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "cl-pipelined": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    "cl-extra-bytes": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
    "chunked-trailers": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Leak: secret\r\n\r\n"
                        "HTTP/1.1 204 No Content\r\n\r\n",
    "chunked-ext": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0;z\r\n\r\n",
    "chunked-trailing-space": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3  \r\nabc\r\n0  \r\n\r\n",
    "chunked-then-deflate": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, deflate\r\n\r\nWorld",
    "te-chunked-then-identity": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\nWorld",
    "te-gzip-chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nzz\r\n0\r\n\r\n",
    "te-gzip": "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzz",
    "te-and-cl": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    "cl-twice": "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "close-delimited": "HTTP/1.1 200 OK\r\n\r\nstream until close",
    "close-delimited-10": "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
    "keepalive-10": "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
    "connection-close": "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
    "connection-names-cl": "HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 2\r\n\r\nok",
    "connection-names-te": "HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "no-content-with-cl": "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
    "not-modified-with-cl": "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello",
    "no-content-chunked": "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "informational": "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                     "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
    "switching": "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                 "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x01x",
    "many-fields": "HTTP/1.1 200 OK\r\n" + "".join("X-F%d: v\r\n" % i for i in range(140)) + "Content-Length: 0\r\n\r\n",
    "obs-fold": "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
    "empty-name": "HTTP/1.1 200 OK\r\n: x\r\nContent-Length: 0\r\n\r\n",
    "http20": "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    "http09-like": "hello world",
    "status-2-digits": "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
    "status-4-digits": "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    "status-999": "HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n",
    "no-reason": "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
    "reason-high-bytes": "HTTP/1.1 200 \xc3\x84rger \xff\r\nContent-Length: 0\r\n\r\n",
    "bare-lf": "HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    "set-cookies": "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
    "sse": "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
           "e\r\ndata: hello\r\n\r\n\r\ne\r\ndata: world\r\n\r\n\r\n0\r\n\r\n",
    "engineio-handshake": "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: 97\r\n\r\n"
                          '0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000}',
    "chunk-long-ext": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + "e" * 300 + "\r\nx\r\n0\r\n\r\n",
    "truncated": "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
}


def http_seeds():
    for t in ("fuzz_h1_request", "fuzz_h1_response"):
        clear_seeds(t)
    for name, msg in REQUESTS.items():
        h1("fuzz_h1_request", name, msg, (OPT_DEFAULT, OPT_SMALL_HEAD | OPT_EXTRA))
    for name, line in TE_VARIANTS.items():
        # CL.TE: a front end reading Content-Length forwards the smuggled request in the body.
        msg = ("POST / HTTP/1.1\r\nHost: a\r\n%s\r\nContent-Length: %d\r\n\r\n%s"
               % (line, len(SMUGGLE_BODY), SMUGGLE_BODY))
        h1("fuzz_h1_request", name, msg, (OPT_DEFAULT,))
        # TE only, with a body that reads differently as chunked or as nothing.
        msg = "POST / HTTP/1.1\r\nHost: a\r\n%s\r\n\r\n5\r\nhello\r\n0\r\n\r\n" % line
        h1("fuzz_h1_request", name + "-alone", msg, (OPT_SMALL_CHUNK,))
    for name, msg in RESPONSES.items():
        h1("fuzz_h1_response", name, msg, (OPT_DEFAULT | OPT_FINISH, OPT_SMALL_HEAD | OPT_EXTRA))
    h1("fuzz_h1_response", "head-answer", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", (ANSWER_HEAD,))
    h1("fuzz_h1_response", "head-answer-chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       (ANSWER_HEAD | OPT_FINISH,))
    h1("fuzz_h1_response", "switching-asked", RESPONSES["switching"], (ANSWER_UPGRADE,))
    h1("fuzz_h1_response", "post-answer", RESPONSES["chunked-trailers"], (ANSWER_POST | OPT_SHRINK,))
    h1("fuzz_h1_response", "body-limit-ignored", "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n" + "b" * 20,
       (OPT_SMALL_BODY,))


# ---- WebSocket frames -----------------------------------------------------
# fuzz_websocket_frames.cc: byte 0 bit 0 from_client, bits 1-3 RSV allowed; byte 1 cut seed.
KEY = b"\x37\xfa\x21\x3d"


def frame(op, payload=b"", fin=True, masked=False, rsv=0, length=None):
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    n = len(payload) if length is None else length
    m = 0x80 if masked else 0
    if n <= 125:
        h = bytes([b0, m | n])
    elif n <= 0xFFFF:
        h = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if masked:
        h += KEY
        payload = bytes(c ^ KEY[i % 4] for i, c in enumerate(payload))
    return h + payload


def ws_seeds():
    t = "fuzz_websocket_frames"
    clear_seeds(t)
    for client in (0, 1):
        m = bool(client)
        side = "client" if client else "server"
        cases = {
            "text": frame(1, b"hello", masked=m),
            "binary-16bit": frame(2, b"x" * 300, masked=m),
            "fragmented": frame(1, b"hel", fin=False, masked=m) + frame(9, b"p", masked=m)
                          + frame(0, b"lo", masked=m),
            "ping-pong": frame(9, b"", masked=m) + frame(10, b"abc", masked=m),
            "close-1000": frame(8, b"\x03\xe8bye", masked=m),
            "close-1001-twice": frame(8, b"\x03\xe9", masked=m) + frame(8, b"\x03\xe8", masked=m),
            "close-empty": frame(8, b"", masked=m),
            "close-1-byte": frame(8, b"\x03", masked=m),
            "control-too-long": frame(9, b"p" * 126, masked=m),
            "control-not-fin": frame(9, b"", fin=False, masked=m),
            "bad-opcode": frame(3, b"", masked=m),
            "rsv1-text": frame(1, b"z", masked=m, rsv=4),
            "rsv1-continuation": frame(1, b"a", fin=False, masked=m, rsv=4) + frame(0, b"b", masked=m, rsv=4),
            "continuation-alone": frame(0, b"x", masked=m),
            "text-inside-message": frame(1, b"a", fin=False, masked=m) + frame(1, b"b", masked=m),
            "wrong-masking": frame(1, b"x", masked=not m),
            "len64-top-bit": bytes([0x82, (0x80 if m else 0) | 127, 0x80, 0, 0, 0, 0, 0, 0, 1]),
            "len64-small": bytes([0x82, (0x80 if m else 0) | 127]) + struct.pack(">Q", 3)
                           + (KEY if m else b"") + b"abc",
            "len16-zero": bytes([0x81, (0x80 if m else 0) | 126, 0, 0]) + (KEY if m else b""),
            "partial-header": frame(2, b"y" * 200, masked=m)[:3],
        }
        for name, data in cases.items():
            for rsv_bits in ((0, 4) if name.startswith("rsv") else (0,)):
                write(t, "%s-%s-rsv%d" % (side, name, rsv_bits), bytes([client | (rsv_bits << 1), 5]) + data)


# ---- Engine.IO handshake bodies ------------------------------------------
# fuzz_engineio_sid.cc: byte 0 cut seed.
def engineio_seeds():
    t = "fuzz_engineio_sid"
    clear_seeds(t)
    doc = '{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000}'
    cases = {
        "eio4": "0" + doc,
        "eio3-text": "%d:0%s" % (len(doc) + 1, doc),
        "eio3-text-two-packets": "%d:0%s2:40" % (len(doc) + 1, doc),
        "eio3-binary": b"\x00\x09\x07\xff0" + doc.encode(),
        "sid-escaped": '0{"sid":"a\\u0062c\\"d\\\\e","upgrades":[]}',
        "sid-later": '0{"upgrades":["websocket"],"x":{"sid":"nested"},"sid":"top"}',
        "sid-number": '0{"sid":12345}',
        "sid-empty": '0{"sid":""}',
        "sid-truncated": '0{"sid":"abc',
        "not-open-packet": '4{"sid":"x"}',
        "json-error": '0{"sid" "x"}',
        "html": "<!doctype html><html>",
        "too-many-digits": "123456789012:0{}",
        "whitespace": '0{ "sid" : "w" }',
        "long-sid": '0{"sid":"' + "s" * 600 + '"}',
    }
    for name, body in cases.items():
        if isinstance(body, str):
            body = body.encode()
        write(t, name, bytes([3]) + body)


# ---- Affinity keys --------------------------------------------------------
def jwt(payload):
    enc = lambda s: base64.urlsafe_b64encode(s.encode()).rstrip(b"=").decode()
    return enc('{"alg":"HS256","typ":"JWT"}') + "." + enc(payload) + ".c2ln"


def affinity_seeds():
    t = "fuzz_affinity_key"
    clear_seeds(t)
    cases = {
        "cookie": "GET /a\n198.51.100.7\nCookie: a=1; tether_affinity=abc; b=2\nCookie: tether_affinity=late\n",
        "cookie-quoted": 'GET /\n10.0.0.1\ncookie:  token = "q v" ;x\n',
        "cookie-empty-first": "GET /\n10.0.0.1\nCookie: sid=; sid=second\n",
        "header": "GET /\n10.0.0.1\nX-User-Id:  u-42 \t\nx-user-id: later\n",
        "query": "GET /p?session=s1&sid=abc&EIO=4&transport=polling#frag\n::1\n",
        "engineio-handshake": "GET /socket.io/?EIO=4&transport=polling&t=N8hyd6w\n127.0.0.1\n",
        "engineio-poll": "POST /socket.io/?EIO=4&transport=polling&sid=lv_VI97HAXpY6yYWAAAC\n127.0.0.1\n",
        "jwt-cookie": "GET /\n10.0.0.1\nCookie: token=%s\n" % jwt('{"id":"user-1","sub":"s"}'),
        "jwt-b64-helper": 'GET /\n10.0.0.1\nCookie: token=b64({"alg":"none"}).b64({"id":"u\\u00e9","n":1.5e3}).sig\n',
        "jwt-bearer": "GET /\n10.0.0.1\nAuthorization: Bearer %s\n" % jwt('{"sub":12345,"id":true}'),
        "jwt-bearer-lower": "GET /\n10.0.0.1\nauthorization: bearer\t%s\n" % jwt('{"id":"x"}'),
        "jwt-uri-claim": 'GET /\n10.0.0.1\nX-Token: b64({}).b64({"https://example.com/claims/user":"me"}).s\n',
        "jwt-not-object": "GET /\n10.0.0.1\nCookie: token=b64({}).b64([1,2]).s\n",
        "jwt-duplicate": 'GET /\n10.0.0.1\nCookie: token=b64({}).b64({"id":"a","id":"b"}).s\n',
        "jwt-nested": 'GET /\n10.0.0.1\nCookie: token=b64({}).b64({"x":{"id":"inner"},"id":"outer"}).s\n',
        "jwt-other-scheme": "GET /\n10.0.0.1\nAuthorization: Token a.b.c\n",
        # The JWT reader against the old one (jwt_reference.h): escapes in names and values,
        # padding, a number the payload ends in, a realistic token among a browser's cookies,
        # and a bare JSON payload (each line is also read as one).
        "jwt-escaped-name": "GET /\n10.0.0.1\nCookie: token=%s\n" % jwt('{"\\u0069dx":1,"\\u0069d":"x","id":"y"}'),
        "jwt-escaped-value": "GET /\n10.0.0.1\nCookie: token=%s\n"
                             % jwt('{"id":"\\ud83d\\ude00\\u00e9\\n\\/\\"","sub":"\\uDBFF\\uDFFF"}'),
        "jwt-padded": "GET /\n10.0.0.1\nCookie: token=eyJhbGciOiJub25lIn0=.%s==.\n"
                      % base64.urlsafe_b64encode(b'{"id":"p"}').rstrip(b"=").decode(),
        "jwt-number-truncated": "GET /\n10.0.0.1\nCookie: token=%s\n" % jwt('{"sub":"s","id":12'),
        "jwt-realistic": "GET /api/v1/chats\n198.51.100.7\nHost: chat.example.com\n"
                         "Cookie: _ga=GA1.1.1234567890.1700000000; _gid=GA1.2.987654321.1700000000; "
                         "csrftoken=Zq8n3V0yXkR2mT5wL9pB4cF7hJ1sD6gA; theme=dark; token=%s; last=1\n"
                         % jwt('{"iss":"https://auth.example.com","sub":"user-8c1f42","aud":"webui",'
                               '"exp":1900000000,"iat":1700000000,"jti":"5d1f0e2a-9b7c",'
                               '"email":"jane@example.com","id":"6f1c2d7e-aaaa-bbbb-cccc-0123456789ab"}'),
        "json-payload": '{"a":[{"id":1},"}"],"s\\u0069d":"eio","\\u0069d":"x\\u0041","sub":-1.5e3}\n'
                        '{ "sub" : 7 , "id" : true }\n',
        "specs": "GET /p?q=1\n10.0.0.1\nCookie: a=1\n\ncookie:a\nheader:X-Forwarded-For\nquery:q\njwt:cookie:a:b\n"
                 "jwt:header:authorization:sub\nengineio_sid\nclient_ip\n",
        "specs-bad": "GET /\n1.2.3.4\n\ncookie:\njwt:cookie:a\nfoo:bar\nclient_ip:x\n",
    }
    for name, text in cases.items():
        write(t, name, text)


# ---- Configuration --------------------------------------------------------
def config_seeds():
    t = "fuzz_config"
    clear_seeds(t)
    example = os.path.join(HERE, "..", "..", "packaging", "tether.example.yaml")
    if os.path.exists(example):
        with open(example) as f:
            write(t, "example", f.read())
    cases = {
        "minimal": "backends:\n  - url: http://127.0.0.1:8080\n",
        "full": """listeners:
  - address: 0.0.0.0:8000
admin:
  address: 127.0.0.1:9901
workers: 2
backends:
  - { url: "http://10.0.0.11:8080", weight: 100 }
  - { url: "http://app.svc.cluster.local:8080", resolve_interval: 10s }
balance: least_conn
health: { path: /health, interval: 5s, timeout: 2s, rise: 2, fall: 3, expect_status: "200-299", expect_body: "ok", slow_start: 30s }
passive: { consecutive_failures: 5, eject_for: 30s, eject_max: 5m }
affinity:
  keys: [engineio_sid, "jwt:cookie:token:id", "cookie:tether_affinity"]
  cookie: { name: tether_affinity, insert: true, max_age: 1h }
  ttl: 1h
  store: redis://:pw@127.0.0.1:6379/2
  on_target_down: strict
  lookup_timeout: 5ms
routes:
  - match: { path_prefix: /ws/socket.io/ }
    affinity: { keys: [engineio_sid] }
timeouts: { connect: 5s, request_header: 10s, downstream_idle: 75s, upstream_first_byte: 30m, upstream_idle: 30m, tunnel_idle: 1h, shutdown_grace: 30s }
limits: { max_connections: 20000, max_request_header_bytes: 64KiB, max_request_body_bytes: 100MiB }
retries: { attempts: 2 }
trusted_proxies: [10.0.0.0/8, "fd00::/8"]
access_log: { enabled: true, format: json }
""",
        "env-expansion": "backends:\n  - url: ${BACKEND_URL}\n  - url: ${OTHER:-http://127.0.0.1:9}\n# ${NOT_EXPANDED}\n"
                         "\x00BACKEND_URL=http://127.0.0.1:8081\nTETHER_WORKERS=auto\nTETHER_LOG_LEVEL=debug\n",
        "env-overrides": "workers: 1\n\x00TETHER_LISTEN=127.0.0.1:0,[::1]:0\nTETHER_BACKENDS=http://a:1, http://b:2\n"
                         "TETHER_ADMIN=:9901\nTETHER_REDIS_URL=redis://u:p%40ss@h:1/15\n--workers=3\n--log-format\njson\n",
        "flags": "{}\n\x00--listen=127.0.0.1:1\n-b\nhttp://127.0.0.1:2\n--check-config\n",
        "help": "\x00--help\n",
        "version": "\x00--version\n",
        "bad-values": "workers: many\nhealth: { interval: 5 parsecs, rise: -1 }\nlimits: { max_request_header_bytes: 64XB }\n"
                      "backends: [{ url: 'ftp://x' }, { url: 'http://a' }, { url: 'https://b:1' }]\nunknown_key: 1\n",
        "duplicates": "listeners: [{address: ':8000'}, {address: '0.0.0.0:8000'}]\nadmin: {address: '0.0.0.0:8000'}\n"
                      "backends: [{url: 'http://a:1'}, {url: 'http://a:1'}]\n",
        "tls": "listeners:\n  - address: :8443\n    tls:\n      certificates:\n        - { cert: /nonexistent.pem, key: /nonexistent.key }\n",
        "yaml-anchors": "x: &a { url: 'http://a:1' }\nbackends: [*a, *a]\n",
        "yaml-tags": "workers: !!str 2\nbackends: !!seq []\n",
        "yaml-deep": "routes: " + "[" * 40 + "]" * 40 + "\n",
        "durations": "timeouts: { connect: 1h30m, request_header: 0, downstream_idle: 250ms, tunnel_idle: 1d, shutdown_grace: 9223372036854775807h }\n",
        "sizes": "limits: { max_request_header_bytes: 1TiB, max_request_body_bytes: 18446744073709551615, max_connections: 4294967296 }\n",
        "dollar": "health: { expect_body: '$${literal} ${UNSET}' }\n",
    }
    for name, text in cases.items():
        write(t, name, text)


# ---- Admin -----------------------------------------------------------------
# fuzz_admin.cc: byte 0 cut seed (bit 7: a 130 KB body follows).
def admin_seeds():
    t = "fuzz_admin"
    clear_seeds(t)
    cases = {
        "get-backends": "GET /admin/backends HTTP/1.1\r\nHost: a\r\n\r\n",
        "affinity-invalid-utf8": "GET /admin/affinity?key=cookie:x=%ff HTTP/1.1\r\nHost: a\r\n\r\n",
        "affinity-raw-high-bytes": "GET /admin/affinity?key=\xff\xfe HTTP/1.1\r\nHost: a\r\n\r\n",
        "pipelined": "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nHEAD /metrics HTTP/1.1\r\nHost: a\r\n\r\n"
                     "GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "post-no-token": "POST /admin/backends/0/drain?deadline=30s HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        "post-token": "POST /admin/reload HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer s3cret\r\nContent-Length: 4\r\n\r\nbody",
        "post-chunked": "POST /admin/backends/1/weight?value=5 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "3\r\nabc\r\n0\r\n\r\n",
        "throwing-handler": "GET /throw HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
        "malformed": "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
        "upgrade": "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "http10": "GET /healthz HTTP/1.0\r\n\r\n",
        "garbage": "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        "truncated": "GET /admin/backends HTTP/1.1\r\nHost: a\r\nX-Incomplete: ",
        "split-authorization": "POST /admin/x HTTP/1.1\r\nAuthor",
    }
    for name, text in cases.items():
        write(t, name, b"\x05" + text.encode("latin-1"))
    write(t, "too-large", b"\x85" + b"POST /admin/reload HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n\r\n")


# ---- Shared admin state -----------------------------------------------------
# fuzz_admin_state.cc: byte 0 what the tether knows, then "field=value" lines.
def admin_state_seeds():
    t = "fuzz_admin_state"
    clear_seeds(t)
    cases = {
        "drained-with-deadline": (0x13, "drain=1 1700000000123 1700000030123\nversion=4\nby=host-a 127.0.0.1:9901"),
        "enabled-and-weight": (0x25, "drain=0 1700000000123 0\nweight=7 1700000000456\nversion=9"),
        "garbage-drain": (0x03, "drain=yes please\nweight=40 6"),
        "weight-too-large": (0x0c, "weight=10001 5"),
        "weight-no-time": (0x04, "weight=5"),
        "twice": (0x01, "drain=1 5 0\ndrain=0 6 0"),
        "by-control": (0x00, "drain=1 5 0\nby=a\x01b"),
        "empty": (0x0f, ""),
        "unknown-fields": (0x00, "colour=blue\nversion=x\ndrain_ms=5"),
        "message-addresses": (0x00, "10.0.0.1:8080\n[::1]:80\n[fd00::1%eth0]:80\ntether:admin:backend:1.2.3.4:80"),
        "long-numbers": (0x05, "drain=1 999999999999999999 9999999999999999999\nweight=0 1"),
    }
    for name, (opts, text) in cases.items():
        write(t, name, bytes([opts]) + text.encode("latin-1"))

# ---- Upgrade environment ---------------------------------------------------
# fuzz_upgrade_fds.cc: TETHER_UPGRADE_FDS, NUL, workers byte, options byte, then
# the configured listener addresses and the admin address, one per line.
def upgrade_seeds():
    t = "fuzz_upgrade_fds"
    clear_seeds(t)
    cases = {
        "same": ("proxy:0.0.0.0:8000=4,proxy:0.0.0.0:8000=5,admin:127.0.0.1:9901=6", 2, 1,
                 ["0.0.0.0:8000"], "127.0.0.1:9901"),
        "fewer-workers": ("proxy:0.0.0.0:8000=4,proxy:0.0.0.0:8000=5,proxy:0.0.0.0:8000=6", 1, 1,
                          ["0.0.0.0:8000"], "127.0.0.1:9901"),
        "more-workers-shared": ("proxy:127.0.0.1:0=4", 4, 0, ["127.0.0.1:0"], "127.0.0.1:0"),
        "port-zero-twice": ("proxy:127.0.0.1:0=4,proxy:127.0.0.1:0=5", 1, 2,
                            ["127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"], ""),
        "dropped-and-moved": ("proxy:[::1]:8000=4,proxy:[::]:8001=5,admin:localhost:9901=6", 1, 4,
                              ["[::]:8001"], "localhost:9902"),
        "ready-fd": ("3", 1, 0, [], ""),
        "leading-zero": ("proxy:a:1=04", 1, 0, ["a:1"], ""),
        "two-admins": ("admin:a:1=4,admin:a:1=5", 1, 0, [], "a:1"),
        "same-fd-twice": ("proxy:a:1=4,proxy:b:2=4", 1, 0, ["a:1", "b:2"], ""),
        "trailing-comma": ("proxy:a:1=4,", 1, 0, ["a:1"], ""),
        "huge-fd": ("proxy:a:1=99999999999999999999", 1, 0, ["a:1"], ""),
        "equals-in-address": ("proxy:a=b:1=4", 1, 0, ["a=b:1"], ""),
    }
    for name, (env, workers, options, listeners, admin) in cases.items():
        rest = bytes([workers - 1, options]) + "\n".join(listeners + [admin]).encode()
        write(t, name, env.encode() + b"\0" + rest)

# HTTP/2 (fuzz_h2_server.cc): option byte, cut byte, then a client's bytes.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream & 0x7FFFFFFF) + payload


def hpack_int(value, prefix_bits, first=0):
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes([first | value])
    out = [first | top]
    value -= top
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def hpack(fields):
    """Literal fields without indexing, new names, no Huffman (RFC 7541 §6.2.2)."""
    out = b""
    for name, value in fields:
        name, value = name.encode(), value.encode()
        out += b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value
    return out


def h2_request(path="/", method="GET", extra=()):
    return hpack([(":method", method), (":scheme", "https"), (":authority", "chat.example"), (":path", path)] + list(extra))


def h2_seeds():
    t = "fuzz_h2_server"
    clear_seeds(t)
    HEADERS, DATA, PRIORITY, RST, SETTINGS, PING, GOAWAY, WU, CONT = 1, 0, 2, 3, 4, 6, 7, 8, 9
    ES, EH, ACK = 1, 4, 1
    start = H2_PREFACE + h2_frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 65535))
    post = h2_request("/upload", "POST", [("content-length", "10")])
    cases = {
        "get": h2_frame(HEADERS, EH | ES, 1, h2_request("/api/chats?page=2", extra=[("cookie", "a=1"), ("cookie", "b=2")])),
        "post-body": h2_frame(HEADERS, EH, 1, post) + h2_frame(DATA, 0, 1, b"01234") + h2_frame(DATA, ES, 1, b"56789"),
        "post-trailers": h2_frame(HEADERS, EH, 1, h2_request("/t", "POST")) + h2_frame(DATA, 0, 1, b"x")
        + h2_frame(HEADERS, EH | ES, 1, hpack([("x-checksum", "abc")])),
        "continuation": h2_frame(HEADERS, 0, 1, h2_request("/c")) + h2_frame(CONT, 0, 1, hpack([("x-a", "1")]))
        + h2_frame(CONT, EH, 1, hpack([("x-b", "2")])),
        "continuation-flood": h2_frame(HEADERS, 0, 1, h2_request("/c"))
        + b"".join(h2_frame(CONT, 0, 1, hpack([("x-c", "1")])) for _ in range(12)),
        "rapid-reset": b"".join(h2_frame(HEADERS, EH | ES, i, h2_request("/")) + h2_frame(RST, 0, i, struct.pack(">I", 8))
                                for i in range(1, 40, 2)),
        "rst-mid-body": h2_frame(HEADERS, EH, 1, post) + h2_frame(DATA, 0, 1, b"012") + h2_frame(RST, 0, 1, struct.pack(">I", 8)),
        "ping-flood": b"".join(h2_frame(PING, 0, 0, b"pingping") for _ in range(30)),
        "settings-flood": b"".join(h2_frame(SETTINGS, 0, 0, struct.pack(">HI", 3, 10)) for _ in range(20)),
        "settings-ack": h2_frame(SETTINGS, ACK, 0) + h2_frame(HEADERS, EH | ES, 1, h2_request()),
        "empty-data-flood": h2_frame(HEADERS, EH, 1, h2_request("/", "POST")) + b"".join(h2_frame(DATA, 0, 1) for _ in range(20)),
        "window-update": h2_frame(HEADERS, EH | ES, 1, h2_request()) + h2_frame(WU, 0, 0, struct.pack(">I", 1 << 20))
        + h2_frame(WU, 0, 1, struct.pack(">I", 100)) + h2_frame(WU, 0, 1, struct.pack(">I", 0)),
        "zero-window": H2_PREFACE + h2_frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 0)) + h2_frame(HEADERS, EH | ES, 1, h2_request()),
        "goaway": h2_frame(HEADERS, EH | ES, 1, h2_request()) + h2_frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0)),
        "priority": h2_frame(PRIORITY, 0, 3, struct.pack(">IB", 1, 16)) + h2_frame(HEADERS, EH | ES | 0x20, 1,
                                                                                   struct.pack(">IB", 0, 200) + h2_request()),
        "connection-header": h2_frame(HEADERS, EH | ES, 1, h2_request(extra=[("connection", "close"), ("te", "gzip")])),
        "uppercase": h2_frame(HEADERS, EH | ES, 1, h2_request(extra=[("X-Upper", "1")])),
        "big-header": h2_frame(HEADERS, EH | ES, 1, h2_request(extra=[("x-big", "h" * 3000)])),
        "content-length-mismatch": h2_frame(HEADERS, EH, 1, post) + h2_frame(DATA, ES, 1, b"0123456789abc"),
        "extended-connect": h2_frame(HEADERS, EH, 1, hpack([(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
                                                            (":authority", "chat.example"), (":path", "/ws"),
                                                            ("sec-websocket-version", "13")])) + h2_frame(DATA, 0, 1, b"\x81\x00"),
        "concurrent": b"".join(h2_frame(HEADERS, EH | ES, i, h2_request("/" + str(i))) for i in range(1, 20, 2)),
        "padded": h2_frame(HEADERS, EH | 0x8, 1, b"\x03" + post + b"\0\0\0") + h2_frame(DATA, ES | 0x8, 1, b"\x02" + b"0123456789" + b"\0\0"),
    }
    for name, body in cases.items():
        data = body if body.startswith(H2_PREFACE) else start + body
        for opt, suffix in ((0, ""), (2, "-small"), (1 | 4, "-ws-trailers"), (8, "-reset"), (12 | 2, "-1xx-small")):
            write(t, name + suffix, bytes([opt, 13]) + data)
    write(t, "bytewise-get", bytes([0, 0]) + start + cases["get"])
    write(t, "not-a-preface", bytes([0, 255]) + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")


if __name__ == "__main__":
    http_seeds()
    ws_seeds()
    engineio_seeds()
    affinity_seeds()
    config_seeds()
    admin_seeds()
    admin_state_seeds()
    upgrade_seeds()
    h2_seeds()
    for t in sorted(os.listdir(CORPUS)):
        print("%-24s %d files" % (t, len(os.listdir(os.path.join(CORPUS, t)))))
