// Nearest-edge routing for the chat socket (docs/deploy.md, "Cross-region chat").
//
// GET /api/edges/ lists the regional edges (wss_url, health_url) and, behind the CDN,
// `preferred`: the region of the visitor's country. With more than one region, the page
// measures the round trip to every edge's health URL (`probes` fetches each, in
// parallel, the median kept), connects to the fastest, and remembers the choice in
// localStorage for `maxAgeMs` (then measures again). While it measures for the first
// time, the preferred region is used at once; the measured one serves the next connects.
// When its edge stops answering (RealtimeClient's onGiveUpEdge, after a few connects that
// never opened), that edge is left out for `failedForMs` and the others are measured again.
//
// An edge on another origin than the page does not get the session cookie: before each
// connect the page asks its own site for a single-use ticket (POST /api/ws-ticket/ with the
// CSRF token) and appends ?ticket= to the edge's URL.
//
// Nothing changes (the page's own host, cookie auth) with a single region, when the
// server says `routing: false` (EDGE_ROUTING=0), or when the page is neither on the
// catalogue's `site_origin` nor on one of its edges: local development, whose catalogue
// names example.com hosts, keeps connecting to itself.
//
// Everything the browser provides (fetch, clocks, storage, location, cookies) can be
// injected, so tests/js/edges.test.mjs runs the selection logic on Node, and
// deploy/simulate_regions.py runs this very module (through deploy/edge_router.mjs).

export const STORAGE_KEY = "chat.edge.v1";

/** The median of some numbers (the mean of the middle two for an even count). */
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * The region to use from measured round trips: `timings` is [{name, ms}] (ms null: no answer).
 * The fastest wins, unless `keep` (the region in use) is within `marginMs` + 10 % of it:
 * staying avoids switching edges back and forth on noise.
 */
export function pickFastest(timings, { keep = null, marginMs = 5 } = {}) {
  const answered = timings.filter((t) => t.ms !== null && t.ms !== undefined);
  if (!answered.length) return null;
  answered.sort((a, b) => a.ms - b.ms);
  const best = answered[0];
  const kept = keep && answered.find((t) => t.name === keep);
  if (kept && kept.ms <= best.ms * 1.1 + marginMs) return kept.name;
  return best.name;
}

/** The median round trip of `probes` parallel requests to one health URL; null if none answered. */
export async function probeRegion(region, { fetch, now, probes = 3, timeoutMs = 3000 }) {
  const one = async () => {
    const t0 = now();
    let timer;
    const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error("timeout")), timeoutMs); });
    try {
      // no-cors: the edges are other origins; an opaque answer is still an answer in time.
      await Promise.race([fetch(region.health_url, { mode: "no-cors", cache: "no-store", credentials: "omit" }), timeout]);
      return now() - t0;
    } catch (err) {
      return null;
    } finally {
      clearTimeout(timer);
    }
  };
  const times = (await Promise.all(Array.from({ length: probes }, one))).filter((t) => t !== null);
  return times.length ? median(times) : null;
}

/** The http(s) origin of a ws(s) URL: what the page's origin is compared with. */
export function httpOrigin(wsUrl) {
  const u = new URL(wsUrl);
  return `${u.protocol === "wss:" ? "https:" : "http:"}//${u.host}`;
}

export function withTicket(url, ticket) {
  return url + (url.includes("?") ? "&" : "?") + "ticket=" + encodeURIComponent(ticket);
}

function csrfFromCookie(cookie) {
  for (const part of (cookie || "").split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "csrftoken") return decodeURIComponent(rest.join("="));
  }
  return "";
}

function browserStorage() {
  try {
    return globalThis.localStorage || null;
  } catch (err) {
    return null; // storage disabled (privacy settings)
  }
}

export class EdgeRouter {
  constructor({
    fetch = globalThis.fetch && globalThis.fetch.bind(globalThis),
    now = () => performance.now(), // probe timing
    clock = () => Date.now(), // ages of stored choices and of failures
    storage = browserStorage(),
    location = globalThis.location,
    cookie = () => (globalThis.document ? document.cookie : ""),
    edgesUrl = "/api/edges/",
    ticketUrl = "/api/ws-ticket/",
    probes = 3,
    probeTimeoutMs = 3000,
    maxAgeMs = 3600 * 1000,
    failedForMs = 5 * 60 * 1000,
  } = {}) {
    Object.assign(this, {
      fetch, now, clock, storage, location, cookie, edgesUrl, ticketUrl, probes, probeTimeoutMs, maxAgeMs, failedForMs,
    });
    this.enabled = false;
    this.regions = [];
    this.preferred = null;
    this.current = null; // {name, at, ms}
    this.failed = new Map(); // region name -> when it stopped answering (clock)
    this.timings = []; // the last measurement, [{name, ms}]
    this.using = null; // the region of the last URL handed out (null: the page's own host)
    this._loading = null;
    this._probing = null;
  }

  /** Read /api/edges/ once and decide whether routing applies to this page. */
  load() {
    if (!this._loading) {
      this._loading = this._load().catch(() => {
        this._loading = null; // try again on the next connect; the page's own host meanwhile
        this.enabled = false;
      });
    }
    return this._loading;
  }

  async _load() {
    const response = await this.fetch(this.edgesUrl, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`edges: HTTP ${response.status}`);
    const body = await response.json();
    this.regions = Array.isArray(body.regions) ? body.regions : [];
    this.preferred = this.regions.some((r) => r.name === body.preferred) ? body.preferred : null;
    const loc = this.location || {};
    const onSite = !!body.site_origin && loc.origin === body.site_origin;
    const onEdge = this.regions.some((r) => r.hostname === loc.hostname);
    this.enabled = body.routing !== false && this.regions.length > 1 && (onSite || onEdge);
  }

  region(name) {
    return this.regions.find((r) => r.name === name) || null;
  }

  _usable(name) {
    const since = this.failed.get(name);
    if (since === undefined) return !!this.region(name);
    if (this.clock() - since >= this.failedForMs) {
      this.failed.delete(name);
      return !!this.region(name);
    }
    return false;
  }

  _stored() {
    try {
      const stored = JSON.parse(this.storage.getItem(STORAGE_KEY) || "null");
      return stored && typeof stored.name === "string" && typeof stored.at === "number" ? stored : null;
    } catch (err) {
      return null;
    }
  }

  _remember(choice) {
    try {
      if (choice) this.storage.setItem(STORAGE_KEY, JSON.stringify(choice));
      else this.storage.removeItem(STORAGE_KEY);
    } catch (err) { /* no storage: measure on every page load */ }
  }

  /** Measure every usable edge (one measurement at a time) and keep the fastest. */
  probe() {
    if (!this._probing) {
      this._probing = this._probe().finally(() => { this._probing = null; });
    }
    return this._probing;
  }

  async _probe() {
    const candidates = this.regions.filter((r) => this._usable(r.name));
    const opts = { fetch: this.fetch, now: this.now, probes: this.probes, timeoutMs: this.probeTimeoutMs };
    this.timings = await Promise.all(candidates.map(async (r) => ({ name: r.name, ms: await probeRegion(r, opts) })));
    const keep = this.current ? this.current.name : this.preferred;
    const name = pickFastest(this.timings.filter((t) => this._usable(t.name)), { keep });
    this.current = name ? { name, at: this.clock(), ms: this.timings.find((t) => t.name === name).ms } : null;
    this._remember(this.current);
    return this.current;
  }

  /**
   * The region for the next connect; null: the page's own host. A known choice (this
   * page's, or the stored one) is used at once, and measured again in the background once
   * older than maxAgeMs; on a first visit the CDN's `preferred` region is used while the
   * first measurement runs; with neither, the page waits for the measurement.
   */
  async choose() {
    await this.load();
    if (!this.enabled) return null;
    const known = [this.current, this._stored()].find((c) => c && this._usable(c.name));
    if (known) {
      this.current = known;
      if (this.clock() - known.at >= this.maxAgeMs) this.probe().catch(() => {});
      return this.region(known.name);
    }
    if (this.preferred && this._usable(this.preferred)) {
      this.probe().catch(() => {});
      return this.region(this.preferred);
    }
    const chosen = await this.probe();
    return chosen ? this.region(chosen.name) : null;
  }

  async ticket() {
    let token = csrfFromCookie(this.cookie());
    if (!token && globalThis.document) {
      const input = document.querySelector("input[name=csrfmiddlewaretoken]");
      token = input ? input.value : "";
    }
    const response = await this.fetch(this.ticketUrl, {
      method: "POST", credentials: "same-origin", cache: "no-store", headers: { "X-CSRFToken": token },
    });
    if (!response.ok) throw new Error(`ticket: HTTP ${response.status}`);
    return (await response.json()).ticket;
  }

  /** RealtimeClient's urlProvider: the chosen edge's URL (with a ticket across origins), or null. */
  async url() {
    const region = await this.choose();
    this.using = region ? region.name : null;
    if (!region) return null;
    const origin = this.location && this.location.origin;
    if (httpOrigin(region.wss_url) === origin) return region.wss_url; // the cookie travels
    return withTicket(region.wss_url, await this.ticket());
  }

  /** RealtimeClient's onGiveUpEdge: leave the edge in use out for a while and measure again. */
  async giveUp() {
    await this.load();
    if (!this.enabled) return false;
    const before = this.using;
    if (before === null) return false; // already on the page's own host: nowhere else to go
    this.failed.set(before, this.clock());
    this.current = null;
    this._remember(null);
    if (this._probing) await this._probing.catch(() => {}); // began before the failure
    await this.probe();
    const after = this.current ? this.current.name : null;
    this.using = after;
    return after !== before;
  }
}
