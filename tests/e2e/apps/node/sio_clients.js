#!/usr/bin/env node
// Many node socket.io-client 4 clients, long-polling only and without
// cookies, as a browser behind an L4 balancer would be seen by the tethers.
//   node sio_clients.js URL CLIENTS ROUNDS CALLS
// Each round opens CLIENTS clients at once; each connects, makes CALLS
// `whoami` calls and checks that one instance answered them all, then
// disconnects. Prints one JSON line: {"ok": n, "failures": [...], "names": {...}}.
// Every wait is bounded (10 s per client).
'use strict';
const { io } = require('socket.io-client');

const [url, clients, rounds, calls] = [process.argv[2], +process.argv[3], +process.argv[4], +process.argv[5]];

function oneClient(round, n) {
  return new Promise((resolve) => {
    const s = io(url, { path: '/ws/socket.io/', transports: ['polling'], reconnection: false,
                         forceNew: true, timeout: 10000 });
    const names = [];
    let settled = false;
    const finish = (failure) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.close();
      resolve(failure ? { failure: `round ${round} client ${n}: ${failure}` } : { names });
    };
    const timer = setTimeout(() => finish('no answer within 10 s'), 10000);
    s.on('connect_error', (err) => {
      const d = err.description;
      const detail = d && (d.message || d.code || (typeof d === 'number' ? `status ${d}` : String(d)));
      finish(`connect_error ${err.message}${detail ? ` (${detail})` : ''}`);
    });
    s.on('disconnect', (why) => finish(`disconnect ${why}`));
    s.on('connect', async () => {
      for (let i = 0; i < calls; i++) {
        let who;
        try {
          who = await s.timeout(5000).emitWithAck('whoami');
        } catch (e) {
          return finish(`whoami ${i}: ${e.message}`);
        }
        names.push(who.name);
      }
      if (new Set(names).size !== 1) return finish(`answered by ${[...new Set(names)].join(', ')}`);
      s.off('disconnect');
      finish(null);
    });
  });
}

(async () => {
  const out = { ok: 0, failures: [], names: {} };
  for (let r = 0; r < rounds; r++) {
    const results = await Promise.all(Array.from({ length: clients }, (_, n) => oneClient(r, n)));
    for (const res of results) {
      if (res.failure) {
        out.failures.push(res.failure);
      } else {
        out.ok++;
        out.names[res.names[0]] = (out.names[res.names[0]] || 0) + 1;
      }
    }
  }
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(0);
})();
