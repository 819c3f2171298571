// The simulator's loader stand-in (django_giosg/testing/loader.js) in a fake page, run by
// Node's built-in test runner: `node --test tests/js/`.
import { strict as assert } from "node:assert";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import vm from "node:vm";
import { webcrypto } from "node:crypto";

const SOURCE = readFileSync(new URL("../../django_giosg/testing/loader.js", import.meta.url), "utf8");
const SIM = "http://127.0.0.1:8765";
const ORG = "5e1a7c0d-0000-4000-8000-000000000001";
const ROOMS = ["room-a", "room-b"];

function memoryStorage() {
  const items = new Map();
  return {
    getItem: (key) => (items.has(key) ? items.get(key) : null),
    setItem: (key, value) => items.set(key, String(value)),
    removeItem: (key) => items.delete(key),
  };
}

// A page that loads the stand-in from `query`; fetches are recorded and answered like the
// simulator does, timers are recorded and run only when the test says so.
function page({ query = "", storage = memoryStorage(), before } = {}) {
  const fetches = [];
  const timers = [];
  const errors = [];
  const window = {
    document: { currentScript: { src: `${SIM}/live2/${ORG}${query}` } },
    location: { href: "http://site.test/account/" },
    localStorage: storage,
    crypto: webcrypto,
    URL,
    Promise,
    Uint8Array,
    JSON,
    Number,
    console: { error: (...args) => errors.push(args) },
    setTimeout: (fn, ms) => timers.push({ fn, ms }),
    fetch: async (url, options) => {
      const body = JSON.parse(options.body);
      fetches.push({ url, method: options.method, body, keepalive: options.keepalive });
      const answer = url.endsWith("/visit") ? { visitor_id: body.visitor_id, rooms: ROOMS } : {};
      return { json: async () => answer };
    },
  };
  window.window = window;
  vm.createContext(window);
  if (before) before(window);
  vm.runInContext(SOURCE, window);
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  return { window, fetches, timers, errors, settle };
}

test("ready callbacks wait until the visitor is known", async () => {
  const { window, fetches, timers, settle } = page();
  const seen = [];
  window._giosg(() => seen.push(window.giosg.unpackedVisitorCid));
  assert.deepEqual(seen, []);
  assert.equal(window.giosg.unpackedVisitorCid, undefined);
  assert.equal(timers.length, 1);
  assert.equal(timers[0].ms, 0);
  timers[0].fn();
  await settle();
  const id = window.giosgSimulator.visitorId;
  assert.match(id, /^[0-9a-f]{32}$/);
  assert.deepEqual(seen, [id]);
  assert.deepEqual(window.giosg.rooms, ROOMS);
  assert.deepEqual(fetches, [
    { url: `${SIM}/_simulator/browser/visit`, method: "POST", body: { visitor_id: id }, keepalive: true },
  ]);
  let resolved = false;
  await window.GiosgClient.visitorGidDeferred.then(() => (resolved = true));
  assert.ok(resolved);
  window._giosg(() => seen.push("late")); // after ready: runs at once
  assert.deepEqual(seen, [id, "late"]);
});

test("the visitor id stays the same for the browser", () => {
  const storage = memoryStorage();
  const first = page({ storage }).window.giosgSimulator.visitorId;
  const second = page({ storage }).window.giosgSimulator.visitorId;
  assert.equal(first, second);
  assert.notEqual(page().window.giosgSimulator.visitorId, first); // another browser
});

test("a visitor_id in the URL wins; blocked storage still gives a valid id", () => {
  const fixed = "08119566026a4e1194a7a3244c90f925";
  assert.equal(page({ query: `?visitor_id=${fixed}` }).window.giosgSimulator.visitorId, fixed);
  const blocked = {
    getItem: () => {
      throw new Error("SecurityError");
    },
  };
  assert.match(page({ storage: blocked }).window.giosgSimulator.visitorId, /^[0-9a-f]{32}$/);
});

test("delay_ms delays readiness and never_ready=1 never becomes ready", () => {
  assert.equal(page({ query: "?delay_ms=250" }).timers[0].ms, 250);
  const blocked = page({ query: "?never_ready=1" });
  assert.equal(blocked.timers.length, 0);
  const seen = [];
  blocked.window._giosg(() => seen.push(1));
  assert.deepEqual(seen, []);
});

test("chat close and removeAll reach the simulator for this visitor", async () => {
  const { window, fetches } = page();
  const id = window.giosgSimulator.visitorId;
  window._giosg("chat", "close", { all: true, hide: true });
  window._giosg("visitor", "removeAll", [{ id: "room-a" }, "room-b"]);
  window._giosg("visitor", "removeAll");
  window._giosg("room", "join", { id: "room-a" }); // accepted and recorded, nothing more
  assert.deepEqual(
    fetches.map((f) => [f.url.split("/").pop(), f.body]),
    [
      ["close", { visitor_id: id }],
      ["remove", { visitor_id: id, rooms: ["room-a", "room-b"] }],
      ["remove", { visitor_id: id, rooms: null }],
    ],
  );
  assert.equal(window.giosgSimulator.calls.length, 4);
  assert.equal(window.giosgSimulator.requests.length, 3);
});

test("commands queued by giosg's embed snippet run when the script loads", () => {
  const queued = [];
  const { window, fetches } = page({
    before: (w) => {
      w._giosg = function () {
        (w._giosg._e = w._giosg._e || []).push(arguments);
      };
      w._giosg("chat", "close");
      w._giosg(() => queued.push("ready"));
    },
  });
  assert.deepEqual(fetches.map((f) => f.url.split("/").pop()), ["close"]);
  // the calls array comes from the page's realm: compare its JSON
  assert.deepEqual(JSON.parse(JSON.stringify(window.giosgSimulator.calls)), [["chat", "close"]]);
  assert.deepEqual(queued, []); // the ready callback waits for readiness
});

test("a failing ready callback does not stop the others", async () => {
  const { window, timers, errors, settle } = page();
  const seen = [];
  window._giosg(() => {
    throw new Error("boom");
  });
  window._giosg(() => seen.push("second"));
  timers[0].fn();
  await settle();
  assert.deepEqual(seen, ["second"]);
  assert.equal(errors.length, 1);
});

test("a line from the chat box goes to the simulator for this visitor; no DOM, no box", async () => {
  const { window, fetches, errors } = page();
  const id = window.giosgSimulator.visitorId;
  const answer = await window.giosgSimulator.say("Hello there");
  assert.deepEqual(
    fetches.map((f) => [f.url.split("/").pop(), f.body]),
    [["chat", { visitor_id: id, text: "Hello there" }]],
  );
  assert.deepEqual(JSON.parse(JSON.stringify(answer)), {});
  assert.deepEqual(errors, []); // the fake page has no document.createElement: nothing drawn
});

test("the widget keeps the chat's history on the device until a close clears it", async () => {
  const storage = memoryStorage();
  const first = page({ storage });
  first.timers.forEach((timer) => timer.fn());
  await first.settle();
  first.window.fetch = async () => ({ json: async () => ({ chat: { messages: ["my secret"] } }) });
  await first.window.giosgSimulator.say("my secret");
  assert.deepEqual([...first.window.giosgSimulator.history()], ["my secret"]);

  const next = page({ storage }); // the next page of that browser: the history is still there
  assert.deepEqual([...next.window.giosgSimulator.history()], ["my secret"]);
  await next.window._giosg("chat", "close", { all: true, hide: true });
  assert.deepEqual([...next.window.giosgSimulator.history()], ["my secret"]); // closing keeps it
  assert.equal(next.window.giosgSimulator.historyCleared, 0);
  await next.window._giosg("chat", "close", { all: true, hide: true, clearHistory: true });
  assert.deepEqual([...next.window.giosgSimulator.history()], []);
  assert.equal(next.window.giosgSimulator.historyCleared, 1);
  assert.deepEqual([...page({ storage }).window.giosgSimulator.history()], []);
});
