// The one module that owns the chat connection: transports (WebSocket, long-polling
// fallback), encodings (JSON, MessagePack), reconnect with backoff, heartbeat, resume
// by seq, and an outbox for messages typed while offline. Pages use it through events
// and never touch a socket. Protocol: docs/protocol.md.
//
// Reconnect: exponential backoff with full jitter — delay = random(0, min(cap, base·2^n)) —
// so the clients of a restarted server spread their reconnects over the window instead
// of arriving together. The attempt counter resets once a connection stays up STABLE_MS.
//
// Fallback: after `fallbackAfter` WebSocket attempts in a row that never opened (a proxy
// that drops Upgrade, a firewall), the client switches to HTTP long-polling — the same
// protocol, served by the same consumer — and tries a WebSocket again every
// `upgradeEveryMs`, switching back as soon as one opens.

import * as msgpack from "./msgpack.js";
// Generated from realtime/protocol.py (manage.py protocol_docs): the codes are typed once.
import { CloseCode, ErrorCode, NO_RECONNECT } from "./protocol-codes.js";

export { CloseCode, ErrorCode };

// Close codes after which reconnecting cannot help.
const FINAL_CODES = NO_RECONNECT;

export function backoffDelay(attempt, { baseMs = 1000, capMs = 30000, random = Math.random } = {}) {
  // Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter").
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt));
  return Math.floor(random() * ceiling);
}

// A busy server's refusal (realtime/admission.py) says when to come back: retry_after
// seconds. Wait that, plus up to a quarter again (jitter), so the refused clients do not
// return together. A browser cannot read a refused handshake's status or Retry-After
// (the WebSocket API reports only a close, 1006): there the backoff above spreads them;
// a join refused with retry_after is retried after it, on the same connection.
export function retryAfterDelay(seconds, { random = Math.random } = {}) {
  const ms = Math.max(0, Number(seconds) || 1) * 1000;
  return Math.floor(ms * (1 + 0.25 * random()));
}

function newClientId() {
  if (globalThis.crypto && crypto.randomUUID) return "c-" + crypto.randomUUID();
  return "c-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
}

export function defaultUrl(path = "/ws/chat/") {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}${path}`;
}

// --- transports ---------------------------------------------------------------------
// Both call handlers.onopen(), handlers.onevent(object), handlers.onclose(code, reason, opened).

export class WebSocketTransport {
  constructor(url, { encoding = "json" } = {}, handlers) {
    this.name = "websocket";
    this.handlers = handlers;
    this.opened = false;
    this.protocols = encoding === "msgpack" ? ["chat.v1.msgpack", "chat.v1.json"] : ["chat.v1.json"];
    this.ws = new WebSocket(url, this.protocols);
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () => {
      this.opened = true;
      this.binary = this.ws.protocol === "chat.v1.msgpack";
      this.encoding = this.binary ? "msgpack" : "json";
      handlers.onopen();
    };
    this.ws.onmessage = (ev) => {
      let event;
      try {
        event = typeof ev.data === "string" ? JSON.parse(ev.data) : msgpack.decode(new Uint8Array(ev.data));
      } catch (e) {
        return; // not ours to crash on
      }
      handlers.onevent(event);
    };
    this.ws.onclose = (ev) => this._closed(ev.code, ev.reason);
    this.ws.onerror = () => {}; // onclose follows with the code
  }

  _closed(code, reason) {
    if (this.dead) return;
    this.dead = true;
    this.handlers.onclose(code, reason, this.opened);
  }

  send(frame) {
    if (this.dead || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(this.binary ? msgpack.encode(frame) : JSON.stringify(frame));
    return true;
  }

  /** Drop the socket now, as if the network died (heartbeat timeout). */
  kill(code = 1006, reason = "dropped") {
    this.ws.onopen = this.ws.onmessage = this.ws.onclose = null;
    try { this.ws.close(CloseCode.GOING_AWAY, reason); } catch (e) { /* already closing */ }
    this._closed(code, reason);
  }

  close(code = CloseCode.NORMAL) {
    this.ws.onclose = null;
    this.dead = true;
    try { this.ws.close(code); } catch (e) { /* ignore */ }
  }
}

export class LongPollTransport {
  constructor(baseUrl, _options, handlers) {
    this.name = "longpoll";
    this.encoding = "json";
    this.base = baseUrl.endsWith("/") ? baseUrl : baseUrl + "/";
    this.handlers = handlers;
    this.opened = false;
    this.sid = null;
    this.cursor = 0;
    this.outgoing = [];
    this.abort = new AbortController();
    this._run();
  }

  async _post(action, payload) {
    return fetch(this.base + action + "/", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: payload === undefined ? "" : JSON.stringify(payload),
      signal: this.abort.signal,
    });
  }

  async _run() {
    try {
      const response = await this._post("open");
      if (!response.ok) return this._closed(1006, `open: HTTP ${response.status}`);
      this.sid = (await response.json()).sid;
      this.opened = true;
      this.handlers.onopen();
      while (!this.dead) {
        const poll = await this._post("poll", { sid: this.sid, cursor: this.cursor });
        if (!poll.ok) return this._closed(1006, `poll: HTTP ${poll.status}`);
        const data = await poll.json();
        this.cursor = data.cursor;
        for (const event of data.events) {
          if (this.dead) return;
          this.handlers.onevent(event);
        }
        if (data.closed !== null && data.closed !== undefined) return this._closed(data.closed, "closed by server");
      }
    } catch (err) {
      this._closed(1006, String(err && err.message));
    }
  }

  _closed(code, reason) {
    if (this.dead) return;
    this.dead = true;
    this.abort.abort();
    this.handlers.onclose(code, reason, this.opened);
  }

  send(frame) {
    if (this.dead || !this.sid) return false;
    this.outgoing.push(frame);
    if (this.outgoing.length === 1) {
      queueMicrotask(async () => {
        const frames = this.outgoing.splice(0);
        try {
          const response = await this._post("send", { sid: this.sid, frames });
          if (!response.ok) this._closed(1006, `send: HTTP ${response.status}`);
        } catch (err) {
          this._closed(1006, String(err && err.message));
        }
      });
    }
    return true;
  }

  kill(code = 1006, reason = "dropped") { this._closed(code, reason); }

  close() {
    const sid = this.sid;
    this.dead = true;
    this.abort.abort();
    if (sid) {
      fetch(this.base + "close/", {
        method: "POST", credentials: "same-origin", body: JSON.stringify({ sid }),
        headers: { "Content-Type": "application/json" }, keepalive: true,
      }).catch(() => {});
    }
  }
}

// --- the client -----------------------------------------------------------------------

export class RealtimeClient extends EventTarget {
  constructor({
    url = defaultUrl(),
    longPollUrl = "/rt/lp/",
    encoding = "json",
    transport = "auto", // "auto" | "websocket" | "longpoll"
    pingMs = 25000,
    pongTimeoutMs = 10000,
    baseMs = 1000,
    capMs = 30000,
    stableMs = 10000,
    fallbackAfter = 3,
    upgradeEveryMs = 60000,
    // Regional edges (static/js/edges.js): urlProvider() is awaited before each WebSocket
    // connect and returns the URL to use (null: `url`); onGiveUpEdge() is called after
    // giveUpEdgeAfter connects in a row that never opened, and resolves true if it moved
    // to another edge. Both optional: without them nothing changes.
    urlProvider = null,
    onGiveUpEdge = null,
    giveUpEdgeAfter = 2,
  } = {}) {
    super();
    Object.assign(this, {
      url, longPollUrl, encoding, pingMs, pongTimeoutMs, baseMs, capMs, stableMs, fallbackAfter, upgradeEveryMs,
      urlProvider, onGiveUpEdge, giveUpEdgeAfter,
    });
    this.policy = transport;
    this.mode = transport === "longpoll" ? "longpoll" : "websocket";
    this.wsFailures = 0;
    this.state = "idle";
    this.attempt = 0;
    this.rtt = null;
    this.user = null;
    this.transport = null;
    this.serial = 0; // increases with every connection
    this.rooms = new Map(); // slug -> {lastSeq, ahead:Set, joined, fresh}
    this.pending = new Map(); // client_id -> frame: sent or not, until the server echoes it
    this.seenEventIds = new Set();
    this._timers = {};
    this._stopped = false;
    if (typeof window !== "undefined") {
      window.addEventListener("online", () => this.reconnectNow());
      document.addEventListener("visibilitychange", () => {
        if (document.visibilityState === "visible") this.reconnectNow();
      });
    }
  }

  // --- public API --------------------------------------------------------------

  connect() {
    this._stopped = false;
    this._open();
  }

  close() {
    this._stopped = true;
    this._clearTimers();
    if (this.transport) this.transport.close(CloseCode.NORMAL);
    this.transport = null;
    this._setState("closed");
  }

  /** Join a room (and re-join it after every reconnect, from the last seq seen). */
  join(room) {
    if (!this.rooms.has(room)) this.rooms.set(room, { lastSeq: null, ahead: new Set(), joined: false });
    this._sendJoin(room);
  }

  leave(room) {
    this.rooms.delete(room);
    this._send({ type: "leave", room });
  }

  /** Post a message; returns its client_id. Kept (and resent with the same id) until echoed. */
  /** Post a message; ``fields`` adds the features' fields (e.g. ``attachments``). */
  sendMessage(room, body, fields = {}) {
    const frame = { ...fields, type: "message", room, body, client_id: newClientId() };
    this.pending.set(frame.client_id, frame);
    this._emit("pending", frame);
    this._trySend(frame);
    return frame.client_id;
  }

  /** Send any protocol frame now (features' types); false if not connected. */
  send(frame) { return this._send(frame); }

  edit(room, id, body) { this._send({ type: "edit", room, id, body }); }
  remove(room, id) { this._send({ type: "delete", room, id }); }
  typing(room) { this._send({ type: "typing", room }); }

  /** Reconnect at once if not connected (tab shown, network back). */
  reconnectNow() {
    if (this._stopped) return;
    if (this.state === "reconnecting" || this.state === "offline") {
      clearTimeout(this._timers.retry);
      this._open();
    }
  }

  on(type, fn) {
    this.addEventListener(type, (e) => fn(e.detail));
    return this;
  }

  get transportName() { return this.transport ? this.transport.name : null; }

  // --- connection -----------------------------------------------------------------

  _open() {
    this._clearTimers();
    if (this.transport) this.transport.close();
    this._setState(this.attempt === 0 ? "connecting" : "reconnecting");
    const serial = ++this.serial;
    const handlers = {
      onopen: () => serial === this.serial && this._onOpen(),
      onevent: (event) => serial === this.serial && this._onEvent(event),
      onclose: (code, reason, opened) => serial === this.serial && this._onClose(code, reason, opened),
    };
    if (this.mode === "websocket" && this.urlProvider) {
      // The URL (nearest edge, a fresh ticket) is chosen before each connect; a provider
      // that fails counts as a connect that never opened.
      this.transport = null;
      Promise.resolve()
        .then(() => this.urlProvider())
        .then(
          (url) => serial === this.serial && !this._stopped && this._start(handlers, url || this.url),
          (err) => serial === this.serial && !this._stopped && handlers.onclose(1006, String(err && err.message), false),
        );
      return;
    }
    this._start(handlers, this.url);
  }

  _start(handlers, url) {
    try {
      this.transport = this.mode === "longpoll"
        ? new LongPollTransport(this.longPollUrl, {}, handlers)
        : new WebSocketTransport(url, { encoding: this.encoding }, handlers);
    } catch (err) {
      this.transport = null;
      this._scheduleReconnect();
    }
  }

  _onOpen() {
    if (this.mode === "websocket") this.wsFailures = 0;
    this._setState("connected");
    this._timers.stable = setTimeout(() => { this.attempt = 0; }, this.stableMs);
    this._startHeartbeat();
    if (this.mode === "longpoll" && this.policy === "auto") this._scheduleUpgrade();
    for (const [room, state] of this.rooms) {
      state.joined = false;
      this._sendJoin(room);
    }
  }

  _onClose(code, reason, opened) {
    this.transport = null;
    this._clearTimers();
    for (const state of this.rooms.values()) state.joined = false;
    this._emit("disconnected", { code, reason, transport: this.mode });
    if (this._stopped) return;
    if (FINAL_CODES.has(code)) {
      this._stopped = true;
      this._setState("closed", { code });
      return;
    }
    if (this.mode === "websocket" && !opened) {
      this.wsFailures += 1;
      if (this.onGiveUpEdge && this.wsFailures === this.giveUpEdgeAfter) {
        this._giveUpEdge();
        return;
      }
      if (this._fallBack()) return;
    }
    this._scheduleReconnect();
  }

  _fallBack() {
    if (this.policy === "auto" && this.wsFailures >= this.fallbackAfter) {
      this.mode = "longpoll"; // WebSockets look blocked here: fall back at once
      this.attempt = 0;
      this._emit("fallback", { failures: this.wsFailures });
      this._open();
      return true;
    }
    return false;
  }

  _giveUpEdge() {
    // Our edge stops answering: the page picks another (edges.js re-probes). Moved: count
    // afresh there, after a jittered delay (a dead region's clients do not arrive
    // together). Nowhere else to go: carry on as before (fallback, backoff).
    const serial = this.serial;
    Promise.resolve()
      .then(() => this.onGiveUpEdge({ failures: this.wsFailures }))
      .catch(() => false)
      .then((moved) => {
        if (serial !== this.serial || this._stopped || this.transport) return;
        if (moved) {
          this.wsFailures = 0;
          this.attempt = 0;
          this._emit("edge", { moved: true });
          this._scheduleReconnect();
        } else if (!this._fallBack()) {
          this._scheduleReconnect();
        }
      });
  }

  _scheduleReconnect() {
    const delay = backoffDelay(this.attempt, { baseMs: this.baseMs, capMs: this.capMs });
    this.attempt += 1;
    const offline = typeof navigator !== "undefined" && navigator.onLine === false;
    this._setState(offline ? "offline" : "reconnecting", { delay, retryAt: Date.now() + delay });
    this._timers.retry = setTimeout(() => this._open(), delay);
  }

  _scheduleUpgrade() {
    // While long-polling, probe for a working WebSocket now and then; switch back on success.
    this._timers.upgrade = setTimeout(() => {
      let probe;
      try {
        probe = new WebSocket(this.url, ["chat.v1.json"]);
      } catch (e) {
        this._scheduleUpgrade();
        return;
      }
      probe.onopen = () => {
        probe.onclose = null;
        probe.close(CloseCode.NORMAL);
        if (this.mode !== "longpoll" || this._stopped) return;
        this.mode = "websocket";
        this.wsFailures = 0;
        this._emit("upgrade", {});
        this._open();
      };
      probe.onerror = () => {};
      probe.onclose = () => { if (this.mode === "longpoll") this._scheduleUpgrade(); };
    }, this.upgradeEveryMs);
  }

  _startHeartbeat() {
    const beat = () => {
      this._send({ type: "ping", t: Date.now(), rtt: this.rtt ?? undefined });
      clearTimeout(this._timers.pong);
      this._timers.pong = setTimeout(() => {
        // A late pong means the path is dead even if the browser still thinks it is open.
        if (this.transport) this.transport.kill(1006, "heartbeat timeout");
      }, this.pongTimeoutMs);
    };
    this._timers.ping = setInterval(beat, this.pingMs);
    beat();
  }

  _clearTimers() {
    clearInterval(this._timers.ping);
    for (const name of ["pong", "retry", "stable", "upgrade"]) clearTimeout(this._timers[name]);
    this._timers = {};
  }

  _setState(state, extra = {}) {
    this.state = state;
    this._emit("state", { state, rtt: this.rtt, transport: this.mode, ...extra });
  }

  // --- frames -----------------------------------------------------------------------

  _send(frame) {
    return this.transport ? this.transport.send(frame) : false;
  }

  _trySend(frame) {
    // A message goes out only once its room is joined on the current connection; it is
    // resent (same client_id) after every reconnect until echoed, so nothing is lost
    // and nothing is stored twice.
    const room = this.rooms.get(frame.room);
    if (room && room.joined && this._send(frame)) frame._sentOn = this.serial;
  }

  _flushPending(room) {
    for (const frame of this.pending.values()) {
      if (frame.room === room && frame._sentOn !== this.serial) this._trySend(frame);
    }
  }

  _sendJoin(room) {
    const state = this.rooms.get(room);
    const frame = { type: "join", room };
    if (state && state.lastSeq !== null) frame.last_seq = state.lastSeq;
    this._send(frame);
  }

  _retryJoin(room, seconds) {
    // Refused by a busy server: join again after its retry_after, on this connection only
    // (a new connection re-joins every room by itself).
    const serial = this.serial;
    setTimeout(() => {
      const state = this.rooms.get(room);
      if (serial === this.serial && state && !state.joined) this._sendJoin(room);
    }, retryAfterDelay(seconds));
  }

  /** Advance a room's contiguous seq; returns false for a seq already seen. */
  _accept(room, seq) {
    const state = this.rooms.get(room);
    if (!state) return false;
    if (state.lastSeq !== null && (seq <= state.lastSeq || state.ahead.has(seq))) return false;
    if (state.lastSeq === null || seq === state.lastSeq + 1) {
      state.lastSeq = seq;
      while (state.ahead.has(state.lastSeq + 1)) {
        state.ahead.delete(state.lastSeq + 1);
        state.lastSeq += 1;
      }
    } else {
      state.ahead.add(seq);
    }
    return true;
  }

  _onEvent(event) {
    if (event.event_id !== undefined && event.event_id !== null) {
      // A pushed event (announcement, mention) is shown once, even if redelivered.
      if (this.seenEventIds.has(event.event_id)) return;
      this.seenEventIds.add(event.event_id);
      if (this.seenEventIds.size > 1000) this.seenEventIds.delete(this.seenEventIds.values().next().value);
    }
    switch (event.type) {
      case "hello":
        this.user = event.user;
        break;
      case "pong":
        clearTimeout(this._timers.pong);
        if (typeof event.t === "number") {
          this.rtt = Date.now() - event.t;
          this._emit("state", { state: this.state, rtt: this.rtt, transport: this.mode });
        }
        break;
      case "joined": {
        const state = this.rooms.get(event.room);
        if (!state) break;
        if (event.reset || state.lastSeq === null) {
          // A fresh start: the history that follows is the latest page, ending at event.seq.
          state.lastSeq = event.seq;
          state.ahead.clear();
          state.fresh = event.seq;
        } else {
          delete state.fresh;
        }
        state.joined = true;
        this._emit("joined", event);
        this._flushPending(event.room);
        return;
      }
      case "message":
      case "message.deleted": {
        const state = this.rooms.get(event.room);
        if (!state) break;
        let show;
        if (state.fresh !== undefined && event.seq <= state.fresh) {
          show = true; // the page after a fresh join; the page renders each seq once
        } else {
          show = this._accept(event.room, event.seq);
        }
        if (event.type === "message" && event.client_id && this.pending.has(event.client_id)) {
          this.pending.delete(event.client_id);
          this._emit("delivered", event);
        }
        // A delete of a message older than our position is not a new seq: always apply it.
        if (show || event.type === "message.deleted") this._emit(event.type, event);
        return;
      }
      case "error":
        if (event.request_type === "join" && this.rooms.has(event.room)
            && (event.code === ErrorCode.UNAVAILABLE || event.code === ErrorCode.RATE_LIMITED)) {
          this._retryJoin(event.room, event.retry_after);
        }
        if (event.client_id && this.pending.has(event.client_id)) {
          const frame = this.pending.get(event.client_id);
          if (event.code === ErrorCode.RATE_LIMITED || event.code === ErrorCode.UNAVAILABLE) {
            // Retry later with the same client_id: the server never stores it twice.
            setTimeout(() => this._trySend(frame), Math.max(1000, (event.retry_after || 1) * 1000));
          } else {
            this.pending.delete(event.client_id);
          }
        }
        break;
      default:
        break;
    }
    this._emit(event.type, event);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
