// Unit tests of the browser client's pure parts, on Node's built-in test runner.
// Run: node --test tests/js/   (tests/js/test_node.py runs it inside `make test`).
import test from "node:test";
import assert from "node:assert/strict";

import { backoffDelay, CloseCode, RealtimeClient, retryAfterDelay } from "../../static/js/realtime-client.js";
import { NO_RECONNECT } from "../../static/js/protocol-codes.js";
import * as msgpack from "../../static/js/msgpack.js";

test("backoff ceiling doubles from 1 s and is capped at 30 s", () => {
  const ceilings = [0, 1, 2, 3, 4, 5, 6, 10].map((n) => backoffDelay(n, { random: () => 0.999999 }));
  assert.deepEqual(ceilings, [999, 1999, 3999, 7999, 15999, 29999, 29999, 29999]);
  assert.equal(backoffDelay(3, { random: () => 0 }), 0);
});

test("500 clients reconnecting after a restart spread over the backoff window (full jitter)", () => {
  for (const attempt of [0, 3, 6]) {
    const ceiling = Math.min(30000, 1000 * 2 ** attempt);
    const delays = Array.from({ length: 500 }, () => backoffDelay(attempt));
    assert.ok(delays.every((d) => d >= 0 && d < ceiling));
    // Spread: every tenth of the window gets some clients, none gets a herd.
    const buckets = new Array(10).fill(0);
    for (const d of delays) buckets[Math.floor((d / ceiling) * 10)] += 1;
    assert.ok(Math.min(...buckets) >= 20, `a tenth of the window is nearly empty: ${buckets}`);
    assert.ok(Math.max(...buckets) <= 90, `a herd in one tenth of the window: ${buckets}`);
    const sorted = [...delays].sort((a, b) => a - b);
    const p10 = sorted[50], p90 = sorted[450];
    console.log(`attempt ${attempt}: window ${ceiling} ms, p10 ${p10} ms, p50 ${sorted[250]} ms, p90 ${p90} ms`);
    assert.ok(p90 - p10 > ceiling * 0.6);
  }
});

test("MessagePack round-trips every kind of value the protocol carries", () => {
  const event = {
    type: "message", room: "lobby", seq: 4294967296, id: 7, author: "ålice", body: "héllo ✓ ".repeat(40),
    client_id: null, ts: "2026-11-25T15:00:00+00:00", t: 1732550000000.5, neg: -70000, small: -3,
    ok: true, no: false, list: [1, "two", { three: 3 }], big: "x".repeat(70000),
  };
  assert.deepEqual(msgpack.decode(msgpack.encode(event)), event);
  assert.throws(() => msgpack.decode(new Uint8Array([0x92, 0x01])), RangeError);
});

test("resume bookkeeping: duplicates and gaps by seq", () => {
  const client = new RealtimeClient({ url: "ws://unused" });
  client.rooms.set("lobby", { lastSeq: 5, ahead: new Set(), joined: true });
  assert.equal(client._accept("lobby", 5), false); // already seen
  assert.equal(client._accept("lobby", 7), true); // ahead of a gap
  assert.equal(client.rooms.get("lobby").lastSeq, 5);
  assert.equal(client._accept("lobby", 7), false); // duplicate of an ahead one
  assert.equal(client._accept("lobby", 6), true); // fills the gap
  assert.equal(client.rooms.get("lobby").lastSeq, 7);
});

test("the close codes that forbid reconnecting (generated from realtime/protocol.py) stop the client", () => {
  assert.deepEqual([...NO_RECONNECT].sort(), [CloseCode.SESSION_ENDED, CloseCode.FORBIDDEN, CloseCode.TOO_MANY_CONNECTIONS]);
  for (const code of NO_RECONNECT) {
    const client = new RealtimeClient({ url: "ws://unused" });
    client._onClose(code, "", true);
    assert.equal(client.state, "closed", `after ${code}`);
  }
  const client = new RealtimeClient({ url: "ws://unused" });
  client._onClose(CloseCode.GOING_AWAY, "draining", true);
  assert.equal(client.state, "reconnecting");
  client.close(); // clears the retry timer
});

test("a busy server's retry_after is honoured, jittered: never sooner, at most a quarter again later", () => {
  assert.equal(retryAfterDelay(2, { random: () => 0 }), 2000);
  assert.equal(retryAfterDelay(2, { random: () => 0.999999 }), 2499);
  const delays = Array.from({ length: 200 }, () => retryAfterDelay(4));
  assert.ok(delays.every((d) => d >= 4000 && d < 5000));
  assert.ok(new Set(delays).size > 100, "not jittered");
});

test("a join refused by a busy server is sent again after retry_after, on the same connection", async () => {
  const client = new RealtimeClient({ url: "ws://unused" });
  const sent = [];
  client.transport = { send: (frame) => { sent.push(frame); return true; }, close() {} };
  client.rooms.set("lobby", { lastSeq: 7, ahead: new Set(), joined: false });
  client._onEvent({ type: "error", code: "unavailable", request_type: "join", room: "lobby", retry_after: 0.01 });
  assert.deepEqual(sent, []);
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.deepEqual(sent, [{ type: "join", room: "lobby", last_seq: 7 }]);
  client._onEvent({ type: "error", code: "unavailable", request_type: "join", room: "lobby", retry_after: 0.01 });
  client.serial += 1; // a new connection meanwhile: it re-joins by itself, the timer does not
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.equal(sent.length, 1);
});
