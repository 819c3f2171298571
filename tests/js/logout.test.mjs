// queue.js and logout.js in a fake page, alone and with the simulator's loader stand-in.
import { strict as assert } from "node:assert";
import { webcrypto } from "node:crypto";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import vm from "node:vm";

import { page } from "./page.mjs";

const ROOM_A = "9926bdfa-56e0-11e5-b98c-6c4008c08dfe";
const ROOM_B = "0f3ba9f2-56e1-11e5-9c5e-6c4008c08dfe";
const ORG = "7f9e9580-095b-42c7-838c-c04e667b26f7";

const plain = (value) => JSON.parse(JSON.stringify(value)); // objects from the page's realm

function recordingGiosg(window) {
  const calls = [];
  window._giosg = (...args) => calls.push(args);
  return calls;
}

const CLOSE = ["chat", "close", { all: true, hide: true, clearHistory: true }];

test("logout closes the chats, hiding the window and clearing the history, and removes the variables in its rooms", () => {
  for (const mode of [{ mode: "logout" }, {}]) { // (no mode: a page cached before close-only)
    const p = page();
    const calls = recordingGiosg(p.window);
    p.load("logout.js", { ...mode, rooms: `${ROOM_A} ${ROOM_B}` });
    assert.deepEqual(plain(calls), [
      CLOSE,
      ["visitor", "removeAll", [{ id: ROOM_A }, { id: ROOM_B }]],
    ]);
  }
});

test("close-only mode closes and clears, and never removes variables (they may be the next user's)", () => {
  const p = page();
  const calls = recordingGiosg(p.window);
  p.load("logout.js", { mode: "close", rooms: ROOM_A });
  assert.deepEqual(plain(calls), [CLOSE]);
});

test("without rooms it removes the variables of giosg's default room", () => {
  for (const rooms of ["", "  ", null]) {
    const p = page();
    const calls = recordingGiosg(p.window);
    p.load("logout.js", rooms === null ? {} : { rooms });
    assert.deepEqual(plain(calls), [CLOSE, ["visitor", "removeAll"]]);
  }
});

test("logout survives a page without giosg, a broken giosg, or no script element", () => {
  const none = page();
  assert.doesNotThrow(() => none.load("logout.js", { rooms: ROOM_A }));

  const broken = page();
  broken.window._giosg = () => {
    throw new Error("giosg broke");
  };
  assert.doesNotThrow(() => broken.load("logout.js", { rooms: ROOM_A }));

  const bare = page();
  const calls = recordingGiosg(bare.window);
  bare.load("logout.js", null);
  assert.deepEqual(calls, []);
});

test("the queue defines _giosg as giosg's snippet does, configured by its element", () => {
  const p = page();
  p.load("queue.js", { "organization-id": ORG, host: "https://service.giosg.com" });
  const queue = p.window._giosg;
  assert.equal(typeof queue, "function");
  assert.equal(queue._c, ORG);
  assert.equal(queue._h, "https://service.giosg.com");
  const ready = () => {};
  queue("chat", "close");
  queue(ready);
  assert.equal(queue._e.length, 2);
  assert.deepEqual(plain(Array.from(queue._e[0])), ["chat", "close"]);
  assert.equal(queue._e[1][0], ready);
});

test("the queue keeps a _giosg that is already there", () => {
  const p = page();
  const calls = recordingGiosg(p.window);
  const existing = p.window._giosg;
  p.load("queue.js", { "organization-id": ORG, host: "https://x.test" });
  assert.equal(p.window._giosg, existing);
  assert.equal(existing._c, undefined);
  assert.deepEqual(calls, []);

  const bare = page();
  bare.load("queue.js", null);
  assert.equal(typeof bare.window._giosg, "function");
  assert.equal(bare.window._giosg._c, undefined);
});

test("queued logout commands reach the simulator once its loader arrives", async () => {
  const fetches = [];
  const p = page({
    globals: {
      URL,
      Uint8Array,
      crypto: webcrypto,
      location: { href: "http://site.test/" },
      localStorage: { getItem: () => null, setItem: () => {} },
      fetch: async (url, options) => {
        fetches.push([url, JSON.parse(options.body)]);
        return { json: async () => ({}) };
      },
    },
  });
  p.load("queue.js", { "organization-id": ORG, host: "http://127.0.0.1:8765" });
  p.load("logout.js", { rooms: `${ROOM_A} ${ROOM_B}` });
  assert.deepEqual(fetches, []); // giosg has not loaded yet: the commands wait in the queue

  const loader = readFileSync(new URL("../../django_giosg/testing/loader.js", import.meta.url), "utf8");
  p.window.document.currentScript = { src: `http://127.0.0.1:8765/live2/${ORG}?visitor_id=abc` };
  vm.runInContext(loader, p.window);
  assert.deepEqual(fetches, [
    ["http://127.0.0.1:8765/_simulator/browser/close", { visitor_id: "abc" }],
    ["http://127.0.0.1:8765/_simulator/browser/remove", { visitor_id: "abc", rooms: [ROOM_A, ROOM_B] }],
  ]);
});
