// The project's example workload: a small HTTP server that keeps its event
// loop busy for a configurable time per request and exports its event-loop
// utilisation (performance.eventLoopUtilization) and request counters with
// prom-client, so an HPA can scale it on elu_utilization.
//
// Environment: HOST, PORT (default 0.0.0.0:8080), BUSY_MS (loop busy per
// request, default 0; ?busy_ms= overrides), BOOT_MS (readiness delay: how long
// it boots before it listens, default 0), NAME (answered, default the host).
'use strict';
const http = require('http');
const { performance } = require('perf_hooks');
const client = require('prom-client');

const host = process.env.HOST || '0.0.0.0';
const port = Number(process.env.PORT || 8080);
const busyDefault = Number(process.env.BUSY_MS || 0);
const bootMs = Number(process.env.BOOT_MS || 0);
const name = process.env.NAME || host;

const registry = new client.Registry();
const requests = new client.Counter({
  name: 'http_requests_total', help: 'Requests answered, by code.', labelNames: ['code'], registers: [registry],
});
// ELU over the last window: sampled every 500ms, so a scrape sees recent load.
let last = performance.eventLoopUtilization();
let elu = 0;
setInterval(() => {
  const now = performance.eventLoopUtilization();
  elu = performance.eventLoopUtilization(now, last).utilization;
  last = now;
}, 500).unref();
new client.Gauge({
  name: 'elu_utilization', help: 'Event-loop utilisation (0..1) over the last 500ms.', registers: [registry],
  collect() { this.set(elu); },
});
// When the server started listening (its readiness delay over): a benchmark splits a cold start with it.
const listeningSince = new client.Gauge({
  name: 'http_listening_since_seconds', help: 'Unix time at which the server started listening.', registers: [registry],
});
const busyTotal = new client.Counter({
  name: 'busy_seconds_total', help: 'Time the handler kept the event loop busy.', registers: [registry],
});

const sleeper = new Int32Array(new SharedArrayBuffer(4));
function busy(ms) {
  // Atomics.wait blocks the loop (it counts as busy) without eating a core.
  if (ms > 0) Atomics.wait(sleeper, 0, 0, ms);
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/metrics') {
    res.setHeader('Content-Type', registry.contentType);
    res.end(await registry.metrics());
    return;
  }
  if (url.pathname === '/healthz') {
    res.end('ok');
    return;
  }
  const ms = url.searchParams.has('busy_ms') ? Number(url.searchParams.get('busy_ms')) : busyDefault;
  busy(ms);
  busyTotal.inc(ms / 1000);
  requests.inc({ code: '200' });
  res.setHeader('Content-Type', 'text/plain');
  res.end(`hello from ${name}\n`);
});
server.keepAliveTimeout = 65000;

setTimeout(() => {
  server.listen(port, host, () => {
    listeningSince.set(Date.now() / 1000);
    console.log(`nodeapp ${name} listening on ${host}:${port} after ${bootMs}ms boot`);
  });
}, bootMs);
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => { server.close(); process.exit(0); });
