// Unit tests of nearest-edge routing (static/js/edges.js) and the RealtimeClient hooks it
// uses, on Node's built-in test runner with an injected fetch, clocks and storage.
// Run: node --test tests/js/   (tests/js/test_node.py runs it inside `make test`).
import test from "node:test";
import assert from "node:assert/strict";

import { EdgeRouter, STORAGE_KEY, httpOrigin, median, pickFastest, probeRegion, withTicket } from "../../static/js/edges.js";
import { RealtimeClient } from "../../static/js/realtime-client.js";

const SITE = "https://chat.example.com";
const REGIONS = ["a", "b", "c"].map((name) => ({
  name,
  label: `Region ${name.toUpperCase()}`,
  hostname: `ws-${name}.example.com`,
  wss_url: `wss://ws-${name}.example.com/ws/chat/`,
  health_url: `https://ws-${name}.example.com/healthz`,
}));

/**
 * A virtual network: fetch() of a health URL answers after that URL's next latency in
 * virtual milliseconds ("down": refused at once; "hang": never), read from `latencies`
 * (an object by URL, or a function of the URL) when the request starts; now() is the virtual
 * clock. Pending requests complete in order of their completion time, one per macrotask,
 * so the code awaiting each one reads the clock at exactly that time.
 */
function virtualNetwork({ latencies = {}, edges = null, ticketStatus = 200 } = {}) {
  let t = 0;
  let scheduled = false;
  const pending = [];
  const calls = [];
  const cursor = {};
  const response = (status, body) => ({ ok: status >= 200 && status < 300, status, json: async () => body });
  const drain = () => {
    scheduled = false;
    pending.sort((x, y) => x.at - y.at);
    const next = pending.shift();
    if (!next) return;
    t = Math.max(t, next.at);
    next.settle();
    if (pending.length) schedule();
  };
  const schedule = () => {
    if (!scheduled) { scheduled = true; setImmediate(drain); }
  };
  const fetch = (url, init = {}) => {
    calls.push({ url, init });
    if (url === "/api/edges/") return Promise.resolve(response(200, edges));
    if (url === "/api/ws-ticket/") {
      return Promise.resolve(response(ticketStatus, { ticket: `tk-${calls.length}`, expires_in: 60 }));
    }
    const list = [].concat((typeof latencies === "function" ? latencies(url) : latencies[url]) ?? "down");
    const i = cursor[url] = (cursor[url] ?? -1) + 1;
    const ms = list[i % list.length];
    if (ms === "hang") return new Promise(() => {});
    return new Promise((resolve, reject) => {
      const settle = ms === "down" ? () => reject(new TypeError("Failed to fetch")) : () => resolve(response(200, null));
      pending.push({ at: t + (ms === "down" ? 1 : ms), settle });
      schedule();
    });
  };
  return { fetch, now: () => t, calls, probes: () => calls.filter((c) => c.url.endsWith("/healthz")) };
}

function memoryStorage(initial = {}) {
  const data = new Map(Object.entries(initial));
  return {
    getItem: (k) => (data.has(k) ? data.get(k) : null),
    setItem: (k, v) => data.set(k, String(v)),
    removeItem: (k) => data.delete(k),
    data,
  };
}

// Latencies by region name, read live: a test may change them (an edge dies).
function latenciesOf(ms) {
  return (url) => ms[REGIONS.find((r) => r.health_url === url)?.name];
}

function router({ latencies = { a: 10, b: 80, c: 200 }, edges = {}, page = SITE, storage = memoryStorage(), wall = { t: 1e12 }, ...rest } = {}) {
  const net = virtualNetwork({
    latencies: latenciesOf(latencies),
    edges: { regions: REGIONS, default: "a", site_origin: SITE, routing: true, ...edges },
    ticketStatus: rest.ticketStatus,
  });
  const url = new URL(page);
  const r = new EdgeRouter({
    fetch: net.fetch, now: net.now, clock: () => wall.t, storage,
    location: { origin: url.origin, hostname: url.hostname },
    cookie: () => "sessionid=s; csrftoken=tok%2Den",
    probeTimeoutMs: 50,
    ...rest.options,
  });
  return { r, net, storage, wall };
}

// --- the pure parts ------------------------------------------------------------------

test("median of the probes; pickFastest keeps the edge in use when it is about as fast", () => {
  assert.equal(median([30, 10, 20]), 20);
  assert.equal(median([40, 10, 20, 30]), 25);
  const timings = [{ name: "a", ms: 10 }, { name: "b", ms: 80 }, { name: "c", ms: null }];
  assert.equal(pickFastest(timings), "a");
  assert.equal(pickFastest(timings, { keep: "b" }), "a"); // b is far slower: switch
  assert.equal(pickFastest([{ name: "a", ms: 40 }, { name: "b", ms: 43 }], { keep: "b" }), "b"); // noise: stay
  assert.equal(pickFastest(timings, { keep: "c" }), "a"); // c does not answer
  assert.equal(pickFastest([{ name: "a", ms: null }]), null);
  assert.equal(httpOrigin("wss://ws-a.example.com/ws/chat/"), "https://ws-a.example.com");
  assert.equal(httpOrigin("ws://127.0.0.1:8001/ws/chat/"), "http://127.0.0.1:8001");
  assert.equal(withTicket("wss://x/ws/chat/", "a+b"), "wss://x/ws/chat/?ticket=a%2Bb");
  assert.equal(withTicket("wss://x/ws/chat/?v=1", "t"), "wss://x/ws/chat/?v=1&ticket=t");
});

test("probeRegion: three parallel no-cors fetches, the median kept; none answering is null", async () => {
  const net = virtualNetwork({ latencies: { "https://x/healthz": [90, 12, 14], "https://dead/healthz": "down", "https://hang/healthz": "hang" } });
  assert.equal(await probeRegion({ health_url: "https://x/healthz" }, { fetch: net.fetch, now: net.now }), 14);
  const probes = net.probes();
  assert.equal(probes.length, 3);
  assert.deepEqual(probes[0].init, { mode: "no-cors", cache: "no-store", credentials: "omit" });
  assert.equal(await probeRegion({ health_url: "https://dead/healthz" }, { fetch: net.fetch, now: net.now }), null);
  const t0 = Date.now();
  assert.equal(await probeRegion({ health_url: "https://hang/healthz" }, { fetch: net.fetch, now: net.now, timeoutMs: 30 }), null);
  assert.ok(Date.now() - t0 < 2000);
});

// --- when routing applies ------------------------------------------------------------------

test("local development (page not on the catalogue's site), one region, or EDGE_ROUTING off: the page's own host", async () => {
  for (const { page, edges } of [
    { page: "http://127.0.0.1:8000/", edges: {} }, // `make run` serves the example.com catalogue
    { page: SITE, edges: { regions: REGIONS.slice(0, 1) } },
    { page: SITE, edges: { routing: false } },
  ]) {
    const { r, net } = router({ page, edges });
    assert.equal(await r.url(), null, `${page} ${JSON.stringify(edges)}`);
    assert.equal(r.enabled, false);
    assert.equal(net.probes().length, 0, "no edge is probed");
    assert.ok(!net.calls.some((c) => c.url === "/api/ws-ticket/"), "no ticket is asked for");
    assert.equal(await r.giveUp(), false);
  }
});

// --- choosing ------------------------------------------------------------------------------

test("no preferred region: measure every edge in parallel, connect to the fastest with a ticket, remember it", async () => {
  const { r, net, storage, wall } = router();
  const url = await r.url();
  assert.match(url, /^wss:\/\/ws-a\.example\.com\/ws\/chat\/\?ticket=tk-\d+$/);
  assert.deepEqual(r.timings, [{ name: "a", ms: 10 }, { name: "b", ms: 80 }, { name: "c", ms: 200 }]);
  assert.equal(net.probes().length, 9, "3 probes per region");
  // The ticket is a CSRF-protected POST to the page's own site.
  const ticketCall = net.calls.find((c) => c.url === "/api/ws-ticket/");
  assert.equal(ticketCall.init.method, "POST");
  assert.equal(ticketCall.init.credentials, "same-origin");
  assert.equal(ticketCall.init.headers["X-CSRFToken"], "tok-en");
  const stored = JSON.parse(storage.getItem(STORAGE_KEY));
  assert.deepEqual(stored, { name: "a", at: wall.t, ms: 10 });
  // The next connect: the same edge, a fresh ticket, no new measurement.
  const again = await r.url();
  assert.match(again, /ws-a\.example\.com/);
  assert.notEqual(again, url);
  assert.equal(net.probes().length, 9);
});

test("the CDN's preferred region is used at once while measuring; the measured fastest serves the next connect", async () => {
  const { r, net } = router({ edges: { preferred: "b", country: "DE" } });
  const first = await r.url();
  assert.match(first, /ws-b\.example\.com/, "preferred at once");
  await r.probe(); // the measurement started in the background
  assert.equal(r.current.name, "a");
  assert.match(await r.url(), /ws-a\.example\.com/);
  assert.equal(net.probes().length, 9, "measured once");
});

test("a remembered choice skips measuring for an hour, then is used at once and measured again in the background", async () => {
  const storage = memoryStorage({ [STORAGE_KEY]: JSON.stringify({ name: "c", at: 1e12 - 1000, ms: 20 }) });
  const wall = { t: 1e12 };
  const { r, net } = router({ storage, wall });
  assert.match(await r.url(), /ws-c\.example\.com/);
  assert.equal(net.probes().length, 0);
  wall.t += 3600 * 1000; // an hour later: the network may have changed
  assert.match(await r.url(), /ws-c\.example\.com/, "no wait for the new measurement");
  await r.probe();
  assert.equal(r.current.name, "a");
  assert.deepEqual(JSON.parse(storage.getItem(STORAGE_KEY)), { name: "a", at: wall.t, ms: 10 });
  assert.match(await r.url(), /ws-a\.example\.com/);
});

test("an edge on the page's own origin is used with the session cookie, without a ticket", async () => {
  const { r, net } = router({ page: "https://ws-a.example.com/" });
  assert.equal(await r.url(), "wss://ws-a.example.com/ws/chat/");
  assert.ok(!net.calls.some((c) => c.url === "/api/ws-ticket/"));
});

test("a failed ticket request fails the connect (RealtimeClient counts it and retries)", async () => {
  const { r } = router({ ticketStatus: 403 });
  await assert.rejects(r.url(), /ticket: HTTP 403/);
});

// --- failing over ---------------------------------------------------------------------------

test("giveUp leaves the dead edge out and moves to the next nearest; with none left, the page's own host", async () => {
  const latencies = { a: 10, b: 80, c: 200 };
  const wall = { t: 1e12 };
  const { r, net, storage } = router({ latencies, wall });
  assert.match(await r.url(), /ws-a/);
  latencies.a = "down";
  const before = net.probes().length;
  assert.equal(await r.giveUp(), true);
  assert.equal(r.current.name, "b");
  assert.deepEqual(net.probes().slice(before).map((c) => c.url), [
    ...Array(3).fill(REGIONS[1].health_url), ...Array(3).fill(REGIONS[2].health_url),
  ], "the dead edge is left out of the new measurement");
  assert.match(await r.url(), /ws-b/);
  assert.equal(JSON.parse(storage.getItem(STORAGE_KEY)).name, "b");
  assert.equal(await r.giveUp(), true); // b dies too: c
  assert.match(await r.url(), /ws-c/);
  assert.equal(await r.giveUp(), true); // c as well: the page's own host
  assert.equal(await r.url(), null);
  assert.equal(await r.giveUp(), false, "nowhere else to go: RealtimeClient falls back as before");
  wall.t += 5 * 60 * 1000; // failures are forgotten after failedForMs
  latencies.a = 10;
  assert.match(await r.url(), /ws-a/);
});

// --- the RealtimeClient hooks -----------------------------------------------------------------

class FakeWebSocket {
  static OPEN = 1;
  static opened = new Set();
  static made = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    FakeWebSocket.made.push(url);
    setTimeout(() => {
      if (this.readyState === 3) return; // closed while connecting: no events, as in browsers
      if (FakeWebSocket.opened.has(url)) {
        this.readyState = 1;
        this.protocol = "chat.v1.json";
        this.onopen && this.onopen();
      } else {
        this.readyState = 3;
        this.onclose && this.onclose({ code: 1006, reason: "" });
      }
    }, 1);
  }
  send() {}
  close() { this.readyState = 3; }
}

function waitFor(client, type, ms = 2000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${type} in ${ms} ms`)), ms);
    client.addEventListener(type, (e) => { clearTimeout(timer); resolve(e.detail); }, { once: true });
  });
}

test("RealtimeClient asks urlProvider before each connect and onGiveUpEdge after 2 connects that never opened", async () => {
  globalThis.WebSocket = FakeWebSocket;
  FakeWebSocket.made = [];
  FakeWebSocket.opened = new Set(["ws://b/ws/chat/?ticket=2"]);
  let edge = "a";
  let tickets = 0;
  const gaveUp = [];
  const client = new RealtimeClient({
    url: "ws://page/ws/chat/", baseMs: 1, capMs: 5, pingMs: 60000,
    urlProvider: async () => `ws://${edge}/ws/chat/?ticket=${++tickets}`,
    onGiveUpEdge: async (info) => { gaveUp.push(info.failures); edge = "b"; tickets = 1; return true; },
  });
  const moved = waitFor(client, "edge");
  const connected = new Promise((resolve) => client.on("state", (s) => s.state === "connected" && resolve()));
  client.connect();
  await moved;
  await connected;
  client.close();
  assert.deepEqual(FakeWebSocket.made, ["ws://a/ws/chat/?ticket=1", "ws://a/ws/chat/?ticket=2", "ws://b/ws/chat/?ticket=2"]);
  assert.deepEqual(gaveUp, [2]);
  assert.equal(client.wsFailures, 0);
});

test("RealtimeClient: no other edge (onGiveUpEdge false) falls back to long-polling as before; no hooks, the url as before", async () => {
  globalThis.WebSocket = FakeWebSocket;
  FakeWebSocket.made = [];
  FakeWebSocket.opened = new Set();
  const client = new RealtimeClient({
    url: "ws://page/ws/chat/", baseMs: 1, capMs: 5,
    urlProvider: async () => null, // routing off: the page's own host
    onGiveUpEdge: async () => false,
  });
  const fallback = waitFor(client, "fallback");
  client.connect();
  assert.deepEqual(await fallback, { failures: 3 });
  client.close();
  assert.deepEqual(FakeWebSocket.made, ["ws://page/ws/chat/", "ws://page/ws/chat/", "ws://page/ws/chat/"]);

  FakeWebSocket.made = [];
  FakeWebSocket.opened = new Set(["ws://page/ws/chat/"]);
  const plain = new RealtimeClient({ url: "ws://page/ws/chat/", pingMs: 60000 });
  plain.connect();
  assert.deepEqual(FakeWebSocket.made, ["ws://page/ws/chat/"], "without a provider the socket opens synchronously, as before");
  plain.close();
});
