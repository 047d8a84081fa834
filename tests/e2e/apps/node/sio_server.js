#!/usr/bin/env node
// A node socket.io 4 server shaped like Open WebUI's (Engine.IO v4 at
// /ws/socket.io/), long-polling only, for tests/e2e/test_socketio_node.py.
//   node sio_server.js NAME        prints "PORT <n>" on stdout once listening
// HTTP: /health 200; anything else outside the Socket.IO path 404.
// Events: whoami(ack) -> {name, sid}; echo(data, ack) -> data.
// A poll with a sid this instance did not issue is answered 400 "Session ID
// unknown" by engine.io: what a client meets when its poll lands elsewhere.
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const name = process.argv[2] || 'sio';
const stats = { connects: 0, unknown_sid: 0 };
const server = http.createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"status":true}');
    return;
  }
  if (req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(stats));
    return;
  }
  if (!req.url.startsWith('/ws/socket.io/')) {
    res.writeHead(404);
    res.end();
  }
});
const io = new Server(server, { path: '/ws/socket.io/', transports: ['polling'], cors: { origin: '*' } });
io.engine.on('connection_error', (err) => {
  if (err.code === 1) stats.unknown_sid++;  // Session ID unknown
});
io.on('connection', (socket) => {
  stats.connects++;
  socket.on('whoami', (ack) => ack({ name, sid: socket.id }));
  socket.on('echo', (data, ack) => ack(data));
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write('PORT ' + server.address().port + '\n');
});
process.on('SIGTERM', () => process.exit(0));
