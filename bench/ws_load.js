#!/usr/bin/env node
// WebSocket request/echo load for bench/ws.sh.
//   node ws_load.js URL [connections=50] [seconds=10] [bytes=64]
// Opens `connections` WebSockets to URL; once all are open, each sends a binary message of
// `bytes` bytes, waits for its echo, and sends the next, for `seconds` seconds (at most 120;
// loopback URLs only). Prints one JSON line:
//   {connections, opened, seconds, messages, rate, p50_ms, p99_ms, errors}
// where messages counts round trips (one message each way through the proxy).
// wss:// URLs: $BENCH_CA names the PEM certificate to trust (ws_common.js).
'use strict';
const { WebSocket, clientOptions } = require('./ws_common');

const url = process.argv[2];
const conns = Number(process.argv[3] || 50);
const seconds = Math.min(Number(process.argv[4] || 10), 120);
const bytes = Number(process.argv[5] || 64);
if (!/^wss?:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])[:/]/.test(url || '')) {
  console.error('usage: ws_load.js ws[s]://127.0.0.1:PORT/ [connections] [seconds] [bytes] (loopback only)');
  process.exit(2);
}
const payload = Buffer.alloc(bytes, 120);
const lat = [];
const sockets = [];
let messages = 0, errors = 0, opened = 0, running = false, t0 = 0n;

function finish() {
  running = false;
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  lat.sort((a, b) => a - b);
  const pct = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : null);
  console.log(JSON.stringify({ connections: conns, opened, seconds: elapsed, messages,
    rate: messages / elapsed, p50_ms: pct(0.5), p99_ms: pct(0.99), errors }));
  for (const ws of sockets) ws.terminate();
  process.exit(0);
}

function start() {
  running = true;
  t0 = process.hrtime.bigint();
  setTimeout(finish, seconds * 1000);
  for (const s of sockets) s.next();
}

const openTimer = setTimeout(() => {
  console.error(`only ${opened}/${conns} connections opened in 30s (errors ${errors})`);
  process.exit(1);
}, 30000);

for (let i = 0; i < conns; i++) {
  const ws = new WebSocket(url, clientOptions());
  let sentAt = 0n;
  ws.next = () => {
    if (running && ws.readyState === WebSocket.OPEN) {
      sentAt = process.hrtime.bigint();
      ws.send(payload);
    }
  };
  ws.on('open', () => {
    if (++opened === conns) { clearTimeout(openTimer); start(); }
  });
  ws.on('message', () => {
    if (!running) return;
    messages++;
    if (lat.length < 5e6) lat.push(Number(process.hrtime.bigint() - sentAt) / 1e6);
    ws.next();
  });
  ws.on('error', () => { errors++; });
  ws.on('close', () => { if (running) errors++; });
  sockets.push(ws);
}
