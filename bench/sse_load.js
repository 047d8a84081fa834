#!/usr/bin/env node
// Event-stream client for bench/sse.sh.
//   node sse_load.js URL [streams=2000] [seconds=10] [warmup_s=1]
// Opens `streams` GETs of URL (an event stream: bench/sse_server.js, directly or through a
// proxy), 100 at a time, over raw sockets with its own HTTP/1.1 and chunked decoding, so
// that every socket read is seen as it came. Once every stream has had its first event
// and warmup_s more have passed, prints "START" and measures for `seconds` (at most 60),
// then prints "END" and, after a second of grace for late events, one JSON line:
//   {streams, opened, seconds, events, rate, p50_ms, p99_ms, p999_ms, max_ms, over10ms,
//    lost, coalesced, stalled, errors}
// over the events sent inside the window: latency = receive time - the event's send time
// (both process.hrtime, CLOCK_MONOTONIC); lost = gaps in a stream's sequence numbers;
// coalesced = events that came in the same read as an earlier event of their stream;
// stalled = streams with no event in the last 0.5 s of the window. Loopback URLs only.
'use strict';
const net = require('net');

const url = process.argv[2] || '';
const nStreams = Math.min(Number(process.argv[3] || 2000), 9000);
const seconds = Math.max(1, Math.min(Number(process.argv[4] || 10), 60));
const warmup = Math.max(0, Math.min(Number(process.argv[5] || 1), 10));
const m = /^http:\/\/(127\.\d+\.\d+\.\d+):(\d+)(\/[^ ]*)?$/.exec(url);
if (!m) {
  console.error('usage: sse_load.js http://127.0.0.1:PORT/path [streams] [seconds] [warmup_s] (loopback only)');
  process.exit(2);
}
const [, host, portStr, path = '/events'] = m;
const port = Number(portStr);
const REQ = `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nAccept: text/event-stream\r\n` +
  'Cache-Control: no-cache\r\n\r\n';

const now = () => process.hrtime.bigint();
let phase = 'open'; // open -> warm -> measure -> grace
let tStart = 0n, tEnd = 0n;
let opened = 0, firstEvents = 0, errors = 0;
const lat = [];
let events = 0, lost = 0, coalesced = 0, over10 = 0, maxMs = 0;
const all = [];

// One stream: response head, then chunked body, then "data: ...\n\n" events.
class Stream {
  constructor(i) {
    this.i = i;
    this.head = true;
    this.raw = '';      // undecoded bytes (latin1)
    this.text = '';     // decoded body not yet split into events
    this.chunkLeft = 0; // bytes of the current chunk still to come
    this.lastN = -1;
    this.lastRecv = 0n;
    this.sock = net.connect({ host, port }, () => { this.sock.write(REQ); });
    this.sock.setNoDelay(true);
    this.sock.on('data', (d) => this.onData(d));
    this.sock.on('error', () => { errors++; });
    this.sock.on('close', () => { if (phase !== 'grace') errors++; });
  }

  onData(d) {
    const t = now();
    this.raw += d.toString('latin1');
    if (this.head) {
      const e = this.raw.indexOf('\r\n\r\n');
      if (e < 0) return;
      if (!/^HTTP\/1\.1 200/.test(this.raw) || !/\r\ntransfer-encoding:\s*chunked/i.test(this.raw.slice(0, e))) {
        console.error(`stream ${this.i}: unexpected head ${JSON.stringify(this.raw.slice(0, e))}`);
        process.exit(1);
      }
      this.raw = this.raw.slice(e + 4);
      this.head = false;
      opened++;
    }
    this.decode();
    let inRead = 0;
    for (;;) {
      const e = this.text.indexOf('\n\n');
      if (e < 0) break;
      const ev = this.text.slice(0, e);
      this.text = this.text.slice(e + 2);
      this.onEvent(ev, t, inRead++);
    }
  }

  decode() { // chunked transfer coding -> this.text
    let r = this.raw, p = 0;
    for (;;) {
      if (this.chunkLeft > 0) {
        const take = Math.min(this.chunkLeft, r.length - p);
        this.text += r.substr(p, take);
        p += take;
        this.chunkLeft -= take;
        if (this.chunkLeft > 0) break;
        this.chunkLeft = -2; // the CRLF after the data
      }
      if (this.chunkLeft === -2) {
        if (r.length - p < 2) break;
        p += 2;
        this.chunkLeft = 0;
      }
      const e = r.indexOf('\r\n', p);
      if (e < 0) break;
      const size = parseInt(r.slice(p, e), 16); // chunk extensions end at ';', parseInt stops there
      p = e + 2;
      if (!(size > 0)) { console.error(`stream ${this.i}: end of stream`); errors++; break; }
      this.chunkLeft = size;
    }
    this.raw = r.slice(p);
  }

  onEvent(ev, t, inRead) {
    const n = Number(/"n":(\d+)/.exec(ev)[1]);
    const sent = BigInt(/"t":(\d+)/.exec(ev)[1]);
    if (this.lastN < 0 && phase === 'open') {
      if (++firstEvents === nStreams) warm();
    }
    const inWindow = phase !== 'open' && phase !== 'warm' && sent >= tStart && sent < tEnd;
    if (inWindow) {
      if (this.lastN >= 0 && n > this.lastN + 1) lost += n - this.lastN - 1;
      const ms = Number(t - sent) / 1e6;
      events++;
      if (inRead > 0) coalesced++;
      if (ms > 10) over10++;
      if (ms > maxMs) maxMs = ms;
      if (lat.length < 5e6) lat.push(ms);
      this.lastRecv = t;
    }
    this.lastN = n;
  }
}

function warm() {
  clearTimeout(openTimer);
  phase = 'warm';
  setTimeout(() => {
    phase = 'measure';
    tStart = now();
    tEnd = tStart + BigInt(seconds * 1e9);
    process.stdout.write('START\n');
    setTimeout(finishWindow, seconds * 1000);
  }, warmup * 1000);
}

function finishWindow() {
  phase = 'grace';
  process.stdout.write('END\n');
  setTimeout(report, 1000);
}

function report() {
  const stalledBefore = tEnd - 500000000n;
  let stalled = 0;
  for (const s of all) if (s.lastRecv < stalledBefore) stalled++;
  lat.sort((a, b) => a - b);
  const pct = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : null);
  console.log(JSON.stringify({ streams: nStreams, opened, seconds, events,
    rate: events / seconds, p50_ms: pct(0.5), p99_ms: pct(0.99), p999_ms: pct(0.999),
    max_ms: maxMs, over10ms: over10, lost, coalesced, stalled, errors }));
  for (const s of all) s.sock.destroy();
  process.exit(0);
}

const openTimer = setTimeout(() => {
  console.error(`only ${opened}/${nStreams} streams opened (${firstEvents} with an event) in 30s, errors ${errors}`);
  process.exit(1);
}, 30000);

let launched = 0;
(function launch() {
  for (let k = 0; k < 100 && launched < nStreams; k++) all.push(new Stream(launched++));
  if (launched < nStreams) setTimeout(launch, 5);
})();
