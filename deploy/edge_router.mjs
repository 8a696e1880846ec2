// static/js/edges.js's EdgeRouter on Node, driven over stdin/stdout by deploy/simulate_regions.py, so the
// simulation measures the browser's own edge choice rather than a copy of it.
//
// One JSON command per line on stdin, one JSON answer per line on stdout, in order:
//   {"cmd": "new", "router": "r1", "edges": {...}, "storage": "browser-1", "warmup": "http://..."}
//   {"cmd": "choose" | "probe" | "giveUp" | "state", "router": "r1"}
//   {"cmd": "url", "router": "r1", "ticket": "..."}   (the ticket the page's site would issue)
// Each answer carries the router's state: current, stored choice, timings, using, and the
// round trip of every health request this router made (samples, by region).
// Health URLs are fetched for real (Node's fetch) and timed as edges.js times them.

import { createInterface } from "node:readline";

import { EdgeRouter, STORAGE_KEY } from "../static/js/edges.js";

const storages = new Map(); // name -> a localStorage of one simulated browser
const routers = new Map(); // name -> {router, samples}

function storage(name) {
  if (!storages.has(name)) {
    const items = new Map();
    storages.set(name, {
      getItem: (key) => (items.has(key) ? items.get(key) : null),
      setItem: (key, value) => items.set(key, String(value)),
      removeItem: (key) => items.delete(key),
    });
  }
  return storages.get(name);
}

async function create({ router: name, edges, storage: storageName, warmup }) {
  const samples = {};
  const byHealthUrl = new Map(edges.regions.map((r) => [r.health_url, r.name]));
  let ticket = null;
  const json = (body) => ({ ok: true, status: 200, json: async () => body });
  const fetch = async (url, init) => {
    if (url === "/api/edges/") return json(edges);
    if (url === "/api/ws-ticket/") return json({ ticket });
    const t0 = performance.now();
    const response = await globalThis.fetch(url, init);
    const region = byHealthUrl.get(url);
    if (region) (samples[region] ||= []).push(performance.now() - t0);
    return response;
  };
  const site = new URL(edges.site_origin);
  const router = new EdgeRouter({
    fetch, storage: storage(storageName || name), location: { origin: site.origin, hostname: site.hostname },
  });
  routers.set(name, { router, samples, setTicket: (t) => { ticket = t; } });
  // Node loads its HTTP client on the first fetch; pay that once, on another origin than the edges.
  if (warmup) await globalThis.fetch(warmup).then((r) => r.arrayBuffer(), () => null);
  await router.load(); // the page has read /api/edges/
}

function state(entry) {
  const { router, samples } = entry;
  const stored = router.storage.getItem(STORAGE_KEY);
  return {
    enabled: router.enabled, current: router.current, using: router.using, timings: router.timings,
    samples, stored: stored ? JSON.parse(stored) : null,
  };
}

async function run(command) {
  if (command.cmd === "new") {
    await create(command);
    return {};
  }
  const entry = routers.get(command.router);
  if (!entry) throw new Error(`no router ${command.router}`);
  const { router } = entry;
  switch (command.cmd) {
    case "choose": {
      const region = await router.choose();
      return { region: region && region.name };
    }
    case "probe": // joins a measurement already under way, as edges.js does
      await router.probe();
      return {};
    case "url":
      entry.setTicket(command.ticket);
      return { url: await router.url() };
    case "giveUp":
      return { moved: await router.giveUp() };
    case "state":
      return {};
    default:
      throw new Error(`unknown command ${command.cmd}`);
  }
}

// Commands run one at a time, in order: each answer is the state right after its command.
let queue = Promise.resolve();
createInterface({ input: process.stdin }).on("line", (line) => {
  queue = queue.then(async () => {
    let answer;
    try {
      const command = JSON.parse(line);
      answer = { ok: true, ...(await run(command)) };
      if (routers.has(command.router)) Object.assign(answer, state(routers.get(command.router)));
    } catch (err) {
      answer = { ok: false, error: String((err && err.stack) || err) };
    }
    process.stdout.write(JSON.stringify(answer) + "\n");
  });
});
