#!/usr/bin/env node
// Event-stream upstream for bench/sse.sh: one event loop holding every stream.
//   node sse_server.js [port=0] [host=127.0.0.1] [period_ms=100] [event_bytes=200]
// Prints "PORT <n>" first. GET /health: 200 {"status": true} (keep-alive, for the proxies'
// health checks). Any other GET: 200 text/event-stream, chunked, that never ends; every
// period_ms it gets one event of exactly event_bytes bytes,
//   data: {"s":<stream>,"n":<seq>,"t":<send time, ns>,"p":"xxx..."}\n\n
// written as one chunk with one write. t is process.hrtime (CLOCK_MONOTONIC, the same
// clock as the client's), read just before the write. Streams are spread over 100 slots
// of the period (stream k in slot k mod 100), so the events of 2,000 streams leave in
// steady groups of 20 every millisecond rather than in one burst.
// Plain `net` with hand-written HTTP/1.1: the cheapest way in node to write 20,000
// events/s, so that the upstream is not what limits the run.
'use strict';
const net = require('net');

const port = Number(process.argv[2] || 0);
const host = process.argv[3] || '127.0.0.1';
const period = Number(process.argv[4] || 100);
const eventBytes = Number(process.argv[5] || 200);
const SLOTS = 100;
const slotMs = period / SLOTS;

const HEAD = 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n' +
  'X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n';
const HEALTH_BODY = '{"status": true}\n';
const HEALTH = 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ' +
  HEALTH_BODY.length + '\r\n\r\n' + HEALTH_BODY;
const CHUNK_HEAD = eventBytes.toString(16) + '\r\n';

const slots = Array.from({ length: SLOTS }, () => new Set());
let streams = 0;

function event(s, n) {
  const t = process.hrtime.bigint().toString();
  const start = 'data: {"s":' + s + ',"n":' + n + ',"t":' + t + ',"p":"';
  const end = '"}\n\n';
  const pad = eventBytes - start.length - end.length;
  return CHUNK_HEAD + start + 'x'.repeat(pad > 0 ? pad : 0) + end + '\r\n';
}

function startStream(sock) {
  const s = streams++;
  const st = { sock, s, n: 0 };
  const slot = slots[s % SLOTS];
  slot.add(st);
  sock.write(HEAD);
  sock.on('close', () => slot.delete(st));
}

// One timer walks the slots: each tick sends the slots whose time has come (catching up
// after a late tick rather than drifting).
const t0 = Date.now();
let next = 0; // index of the next slot to send, counted from t0
function tick() {
  const due = Math.floor((Date.now() - t0) / slotMs);
  for (; next <= due; next++) {
    for (const st of slots[next % SLOTS]) {
      if (st.sock.writable) st.sock.write(event(st.s, st.n++));
    }
  }
  setTimeout(tick, Math.max(0, t0 + next * slotMs - Date.now()));
}
tick();

const server = net.createServer((sock) => {
  sock.setNoDelay(true);
  let buf = '';
  const onData = (d) => {
    buf += d.toString('latin1');
    for (;;) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buf.length > 65536) sock.destroy();
        return;
      }
      const head = buf.slice(0, end);
      buf = buf.slice(end + 4);
      const path = head.slice(0, head.indexOf('\r\n')).split(' ')[1] || '/';
      if (path === '/health') {
        sock.write(HEALTH);
        if (/\r\nconnection:\s*close/i.test(head)) sock.end();
      } else {
        sock.removeListener('data', onData); // the stream owns the connection from here
        sock.resume();
        startStream(sock);
        return;
      }
    }
  };
  sock.on('data', onData);
  sock.on('error', () => {});
});
server.maxConnections = 20000;
server.listen({ port, host, backlog: 4096 }, () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
