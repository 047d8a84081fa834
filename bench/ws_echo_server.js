#!/usr/bin/env node
// WebSocket echo upstream for bench/ws.sh (node + ws: fast enough not to be the bottleneck).
//   node ws_echo_server.js [port=0] [host=127.0.0.1]
// Prints "PORT <n>" first. Echoes every message (text or binary) as it came.
// Plain HTTP: /health answers 200 {"status": true} (for the proxies' health checks), else 426.
'use strict';
const http = require('http');
const { WebSocketServer } = require('./ws_common');

const port = Number(process.argv[2] || 0);
const host = process.argv[3] || '127.0.0.1';
const server = http.createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{"status": true}\n');
  } else {
    res.writeHead(426, { 'Content-Type': 'text/plain' });
    res.end('websocket only\n');
  }
});
server.keepAliveTimeout = 75000;
const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 16 << 20 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
server.listen(port, host, 4096, () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
