// Loads the `ws` module: bench/node_modules (npm install in bench/) or Debian's node-ws.
// clientOptions(): the bench clients' options; with $BENCH_CA (set by run_ws.py --tls), a
// wss:// connection trusts that PEM certificate only (and checks it names the host).
'use strict';
const fs = require('fs');
function loadWs() {
  for (const name of ['ws', '/usr/share/nodejs/ws']) {
    try { return require(name); } catch (e) { /* next */ }
  }
  throw new Error('the ws module is missing: apt-get install node-ws, or npm install in bench/');
}
const ca = process.env.BENCH_CA ? fs.readFileSync(process.env.BENCH_CA) : null;
function clientOptions() {
  return ca ? { perMessageDeflate: false, ca } : { perMessageDeflate: false };
}
module.exports = { WebSocket: loadWs(), WebSocketServer: loadWs().WebSocketServer, clientOptions };
