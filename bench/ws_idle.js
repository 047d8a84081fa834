#!/usr/bin/env node
// Opens N idle WebSockets through a proxy and holds them, for bench/ws.sh's memory scenario.
//   node ws_idle.js URL [n=4000] [parallel=200]
// Each connection opens, exchanges one 16-byte message with the echo upstream (so the
// tunnel is established end to end), then stays idle. Prints "OPEN <n> <errors>" once all
// are open (or after 60 s with what it has), then holds them until stdin closes or SIGTERM,
// at most 10 minutes.
// wss:// URLs: $BENCH_CA names the PEM certificate to trust (ws_common.js).
'use strict';
const { WebSocket, clientOptions } = require('./ws_common');

const url = process.argv[2];
const n = Number(process.argv[3] || 4000);
const parallel = Number(process.argv[4] || 200);
if (!/^wss?:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])[:/]/.test(url || '')) {
  console.error('usage: ws_idle.js ws[s]://127.0.0.1:PORT/ [n] [parallel] (loopback only)');
  process.exit(2);
}
const sockets = [];
let ready = 0, errors = 0, launched = 0, inflight = 0, reported = false;

function report() {
  if (reported) return;
  reported = true;
  process.stdout.write(`OPEN ${ready} ${errors}\n`);
}
function launch() {
  while (inflight < parallel && launched < n) {
    launched++; inflight++;
    const ws = new WebSocket(url, clientOptions());
    let done = false;
    const settle = (ok) => {
      if (done) return;
      done = true; inflight--;
      if (ok) ready++; else errors++;
      if (ready + errors === n) report(); else launch();
    };
    ws.on('open', () => ws.send(Buffer.alloc(16, 105)));
    ws.once('message', () => settle(true));
    ws.on('error', () => settle(false));
    ws.on('close', () => settle(false));
    sockets.push(ws);
  }
}
launch();
setTimeout(report, 60000);
const quit = () => { for (const ws of sockets) ws.terminate(); process.exit(0); };
process.stdin.on('end', quit);
process.stdin.on('close', quit);
process.stdin.resume();
process.on('SIGTERM', quit);
setTimeout(quit, 600000);
