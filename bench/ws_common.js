// Loads the `ws` module: bench/node_modules (npm install in bench/) or Debian's node-ws.
'use strict';
function loadWs() {
  for (const name of ['ws', '/usr/share/nodejs/ws']) {
    try { return require(name); } catch (e) { /* next */ }
  }
  throw new Error('the ws module is missing: apt-get install node-ws, or npm install in bench/');
}
module.exports = { WebSocket: loadWs(), WebSocketServer: loadWs().WebSocketServer };
