// The one module that owns the chat socket: connect, reconnect with backoff, heartbeat,
// resume by seq, and an outbox for messages typed while offline. Pages use it through
// events; they never touch the WebSocket. Protocol: docs/protocol.md.
//
// Reconnect: exponential backoff with full jitter (delay = random(0, min(cap, base·2^n))),
// so clients of a restarted server spread their reconnects over the window instead of
// arriving together. The attempt counter resets once a connection has stayed up for
// STABLE_MS.

export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  MESSAGE_TOO_BIG: 1009,
  SESSION_ENDED: 4001,
  FORBIDDEN: 4003,
  RATE_LIMITED: 4008,
  TOO_MANY_CONNECTIONS: 4029,
});

// Close codes after which reconnecting cannot help.
const FINAL_CODES = new Set([CloseCode.SESSION_ENDED, CloseCode.FORBIDDEN, CloseCode.TOO_MANY_CONNECTIONS]);

export function backoffDelay(attempt, { baseMs = 1000, capMs = 30000, random = Math.random } = {}) {
  // Full jitter (AWS architecture blog, "Exponential Backoff And Jitter").
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt));
  return Math.floor(random() * ceiling);
}

function newClientId() {
  if (globalThis.crypto && crypto.randomUUID) return "c-" + crypto.randomUUID();
  return "c-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
}

export function defaultUrl(path = "/ws/chat/") {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}${path}`;
}

export class RealtimeClient extends EventTarget {
  constructor({
    url = defaultUrl(),
    pingMs = 25000,
    pongTimeoutMs = 10000,
    baseMs = 1000,
    capMs = 30000,
    stableMs = 10000,
  } = {}) {
    super();
    this.url = url;
    this.pingMs = pingMs;
    this.pongTimeoutMs = pongTimeoutMs;
    this.baseMs = baseMs;
    this.capMs = capMs;
    this.stableMs = stableMs;
    this.state = "idle";
    this.attempt = 0;
    this.rtt = null;
    this.user = null;
    this.ws = null;
    this.rooms = new Map(); // slug -> {lastSeq: number|null, ahead: Set<number>}
    this.outbox = []; // {type, room, body, client_id, ...} waiting for an open socket / a join
    this.pending = new Map(); // client_id -> frame, until the server echoes it
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
    if (this.ws) this.ws.close(CloseCode.NORMAL);
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

  /** Post a message; returns its client_id. Queued while offline, sent once. */
  sendMessage(room, body) {
    const frame = { type: "message", room, body, client_id: newClientId() };
    this.pending.set(frame.client_id, frame);
    this._emit("pending", frame);
    this._queue(frame);
    return frame.client_id;
  }

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

  // --- connection -----------------------------------------------------------------

  _open() {
    this._clearTimers();
    this._setState(this.attempt === 0 ? "connecting" : "reconnecting");
    let ws;
    try {
      ws = new WebSocket(this.url, ["chat.v1.json"]);
    } catch (err) {
      this._scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this._setState("connected");
      this._timers.stable = setTimeout(() => { this.attempt = 0; }, this.stableMs);
      this._startHeartbeat();
      for (const room of this.rooms.keys()) {
        this.rooms.get(room).joined = false;
        this._sendJoin(room);
      }
    };
    ws.onmessage = (ev) => this._onFrame(ev.data);
    ws.onclose = (ev) => this._onClose(ws, ev.code, ev.reason);
    ws.onerror = () => {}; // onclose follows with the code
  }

  _onClose(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    this._clearTimers();
    for (const state of this.rooms.values()) state.joined = false;
    this._emit("disconnected", { code, reason });
    if (this._stopped) return;
    if (FINAL_CODES.has(code)) {
      this._stopped = true;
      this._setState("closed", { code });
      return;
    }
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    const delay = backoffDelay(this.attempt, { baseMs: this.baseMs, capMs: this.capMs });
    this.attempt += 1;
    const offline = typeof navigator !== "undefined" && navigator.onLine === false;
    this._setState(offline ? "offline" : "reconnecting", { delay, retryAt: Date.now() + delay });
    this._timers.retry = setTimeout(() => this._open(), delay);
  }

  _dropDeadSocket() {
    // A late pong means the path is dead even if the browser still thinks it is open.
    const ws = this.ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    try { ws.close(4000, "heartbeat timeout"); } catch (e) { /* already closing */ }
    this._onClose(ws, 1006, "heartbeat timeout");
  }

  _startHeartbeat() {
    const beat = () => {
      const t = Date.now();
      this._send({ type: "ping", t, rtt: this.rtt ?? undefined });
      this._timers.pong = setTimeout(() => this._dropDeadSocket(), this.pongTimeoutMs);
    };
    this._timers.ping = setInterval(beat, this.pingMs);
    beat();
  }

  _clearTimers() {
    clearInterval(this._timers.ping);
    clearTimeout(this._timers.pong);
    clearTimeout(this._timers.retry);
    clearTimeout(this._timers.stable);
    this._timers = {};
  }

  _setState(state, extra = {}) {
    this.state = state;
    this._emit("state", { state, rtt: this.rtt, ...extra });
  }

  // --- frames -----------------------------------------------------------------------

  _send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  _queue(frame) {
    const room = this.rooms.get(frame.room);
    if (room && room.joined && this._send(frame)) return;
    this.outbox.push(frame);
  }

  _flushOutbox(room) {
    const keep = [];
    for (const frame of this.outbox) {
      if (frame.room === room && this._send(frame)) continue;
      keep.push(frame);
    }
    this.outbox = keep;
  }

  _sendJoin(room) {
    const state = this.rooms.get(room);
    const frame = { type: "join", room };
    if (state && state.lastSeq !== null) frame.last_seq = state.lastSeq;
    this._send(frame);
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

  _onFrame(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch (e) {
      return;
    }
    if (event.event_id !== undefined) {
      // A pushed event (announcement, mention) is shown once, even if redelivered.
      if (this.seenEventIds.has(event.event_id)) return;
      this.seenEventIds.add(event.event_id);
      if (this.seenEventIds.size > 1000) this.seenEventIds.delete(this.seenEventIds.values().next().value);
    }
    switch (event.type) {
      case "hello":
        this.user = event.user;
        if (event.ping_ms) this.pingMs = event.ping_ms;
        break;
      case "pong":
        clearTimeout(this._timers.pong);
        if (typeof event.t === "number") {
          this.rtt = Date.now() - event.t;
          this._emit("state", { state: this.state, rtt: this.rtt });
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
        break;
      }
      case "message":
      case "message.deleted": {
        const state = this.rooms.get(event.room);
        if (!state) break;
        let show;
        if (state.fresh !== undefined && event.seq <= state.fresh) {
          show = true; // the page sent after a fresh join; the page renders each seq once
        } else {
          show = this._accept(event.room, event.seq);
        }
        if (event.type === "message" && event.client_id && this.pending.has(event.client_id)) {
          this.pending.delete(event.client_id);
          this._emit("delivered", event);
        }
        // A delete of a message older than our position is not a new seq: always apply it.
        if (show || event.type === "message.deleted") this._emit(event.type, event);
        break;
      }
      case "error":
        if (event.client_id && this.pending.has(event.client_id)) {
          if (event.code === "rate_limited" || event.code === "unavailable") {
            // Retry later with the same client_id: the server never stores it twice.
            const frame = this.pending.get(event.client_id);
            setTimeout(() => this._queue(frame), Math.max(1000, (event.retry_after || 1) * 1000));
          } else {
            this.pending.delete(event.client_id);
          }
        }
        this._emit("error", event);
        break;
      default:
        this._emit(event.type, event);
    }
    if (event.type === "joined") {
      this._emit("joined", event);
      this._flushOutbox(event.room);
    }
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
