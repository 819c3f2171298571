// django_giosg/static/django_giosg/capture.js in a fake page: `node --test tests/js/`.
import { strict as assert } from "node:assert";
import { test } from "node:test";

import { fakeGiosg, page } from "./page.mjs";

const ID = "08119566026a4e1194a7a3244c90f925";
const OTHER = "8a60b202474547dbb8ce19737e4c166f";
const DATA = {
  endpoint: "/giosg/visitor/",
  "visitor-id": "",
  "wait-ms": "15000",
  "csrf-token": "tok<en>",
  "csrf-header": "X-Csrftoken",
};

function loaded(data = {}) {
  const p = page();
  const giosg = fakeGiosg(p.window);
  p.load("capture.js", { ...DATA, ...data });
  return { ...p, giosg };
}

const posted = (fetches) => fetches.map((f) => f.body.visitor_id);

test("waits for giosg to be ready and for the visitor, then posts the id once", async () => {
  const { window, fetches, giosg, advance } = loaded();
  await advance(1000);
  assert.deepEqual(fetches, []);
  giosg.becomeReady();
  await advance(0);
  assert.deepEqual(fetches, []); // ready, but the visitor is not known yet
  giosg.identify(ID);
  await advance(0);
  assert.deepEqual(fetches, [
    {
      url: "/giosg/visitor/",
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Csrftoken": "tok<en>" },
      body: { visitor_id: ID },
    },
  ]);
  await advance(60_000); // keeps watching, but nothing changed
  assert.equal(fetches.length, 1);
  assert.equal(window.giosg.unpackedVisitorCid, ID);
});

test("gives up quietly after data-wait-ms", async () => {
  const { fetches, giosg, advance, timers } = loaded({ "wait-ms": "3000" });
  await advance(2999);
  assert.equal(timers().length, 1); // still waiting
  await advance(1);
  assert.equal(timers().length, 0);
  giosg.becomeReady();
  giosg.identify(ID);
  await advance(60_000);
  assert.deepEqual(fetches, []);
  assert.equal(timers().length, 0); // and does not keep watching
});

test("ready in time: the give-up timer is cleared", async () => {
  const { fetches, giosg, advance, timers } = loaded({ "wait-ms": "3000" });
  giosg.becomeReady();
  giosg.identify(ID);
  await advance(0);
  assert.deepEqual(posted(fetches), [ID]);
  assert.equal(timers().filter((t) => !t.every).length, 0);
});

test("skips the post when the session already knows the id", async () => {
  const { fetches, giosg, advance } = loaded({ "visitor-id": ID });
  giosg.becomeReady();
  giosg.identify(ID);
  await advance(30_000);
  assert.deepEqual(fetches, []);
});

test("posts again when the visitor id changes", async () => {
  const { window, fetches, giosg, advance } = loaded({ "visitor-id": ID });
  giosg.becomeReady();
  giosg.identify(ID);
  await advance(5000);
  window.giosg.unpackedVisitorCid = OTHER;
  await advance(2000);
  assert.deepEqual(posted(fetches), [OTHER]);
  window.giosg.unpackedVisitorCid = ID;
  await advance(2000);
  assert.deepEqual(posted(fetches), [OTHER, ID]);
  await advance(20_000);
  assert.equal(fetches.length, 2);
});

test("a refused id is not sent again; a server error or network failure is retried", async () => {
  const { window, fetches, giosg, answer, advance } = loaded();
  answer({ status: 400 });
  giosg.becomeReady();
  giosg.identify(ID);
  await advance(10_000);
  assert.deepEqual(posted(fetches), [ID]); // 400: refused for good
  answer({ status: 503 }, { network: true }, { status: 204 });
  window.giosg.unpackedVisitorCid = OTHER;
  await advance(2000);
  await advance(2000);
  await advance(2000);
  await advance(20_000);
  assert.deepEqual(posted(fetches), [ID, OTHER, OTHER, OTHER]); // then 204: known
});

test("gives up after a few posts on one page", async () => {
  const { fetches, giosg, answer, advance } = loaded();
  answer(...Array(20).fill({ status: 500 }));
  giosg.becomeReady();
  giosg.identify(ID);
  await advance(120_000);
  assert.equal(fetches.length, 5);
});

test("one post at a time", async () => {
  const p = page();
  const giosg = fakeGiosg(p.window);
  let release;
  p.window.fetch = (url, options) => {
    p.fetches.push(JSON.parse(options.body));
    return new Promise((resolve) => (release = () => resolve({ ok: true, status: 204 })));
  };
  p.load("capture.js", DATA);
  giosg.becomeReady();
  giosg.identify(ID);
  await p.advance(10_000); // the answer has not come
  assert.equal(p.fetches.length, 1);
  release();
  await p.advance(10_000);
  assert.equal(p.fetches.length, 1);
});

test("sends giosg's rooms only when asked to", async () => {
  const rooms = ["9926bdfa-56e0-11e5-b98c-6c4008c08dfe", { id: "x" }, 7];
  const asked = loaded({ "send-rooms": "true" });
  asked.giosg.becomeReady();
  asked.giosg.identify(ID, rooms);
  await asked.advance(0);
  assert.deepEqual(asked.fetches[0].body, { visitor_id: ID, rooms: [rooms[0]] });

  const noRooms = loaded({ "send-rooms": "true" });
  noRooms.window.giosg.rooms = undefined;
  noRooms.giosg.becomeReady();
  noRooms.window.giosg.unpackedVisitorCid = ID;
  noRooms.giosg.identify(ID, null);
  await noRooms.advance(0);
  assert.deepEqual(noRooms.fetches[0].body, { visitor_id: ID, rooms: [] });

  const notAsked = loaded();
  notAsked.giosg.becomeReady();
  notAsked.giosg.identify(ID, rooms);
  await notAsked.advance(0);
  assert.deepEqual(notAsked.fetches[0].body, { visitor_id: ID });
});

test("uses the CSRF header the page names", async () => {
  const { fetches, giosg, advance } = loaded({ "csrf-header": "X-Xsrf-Token" });
  giosg.becomeReady();
  giosg.identify(ID);
  await advance(0);
  assert.equal(fetches[0].headers["X-Xsrf-Token"], "tok<en>");
});

test("survives a page without giosg, without fetch, or without its own script element", () => {
  const noGiosg = page();
  noGiosg.load("capture.js", DATA);
  assert.deepEqual(noGiosg.timers(), []);

  const noFetch = page({ globals: { fetch: undefined } });
  fakeGiosg(noFetch.window);
  noFetch.load("capture.js", DATA);
  assert.deepEqual(noFetch.timers(), []);

  const noEndpoint = page();
  fakeGiosg(noEndpoint.window);
  noEndpoint.load("capture.js", { ...DATA, endpoint: "" });
  assert.deepEqual(noEndpoint.timers(), []);

  const bare = page(); // run by something other than its <script> element
  fakeGiosg(bare.window);
  bare.load("capture.js", null);
  assert.deepEqual(bare.timers(), []);
});

test("without a visitor deferred, reads the id as soon as giosg is ready", async () => {
  const { window, fetches, giosg, advance } = loaded();
  window.GiosgClient = undefined;
  window.giosg.unpackedVisitorCid = ID;
  giosg.becomeReady();
  await advance(0);
  assert.deepEqual(posted(fetches), [ID]);
});

test("a broken giosg never throws into the page", async () => {
  const p = page();
  const giosg = fakeGiosg(p.window);
  p.load("capture.js", DATA);
  Object.defineProperty(p.window, "GiosgClient", {
    get() {
      throw new Error("giosg broke");
    },
  });
  assert.doesNotThrow(() => giosg.becomeReady());

  const q = page();
  const other = fakeGiosg(q.window);
  q.load("capture.js", DATA);
  other.becomeReady();
  other.identify(ID);
  Object.defineProperty(q.window, "giosg", {
    get() {
      throw new Error("giosg broke later");
    },
  });
  await q.advance(10_000);
  assert.deepEqual(q.fetches, []);

  const r = page();
  r.window._giosg = () => {
    throw new Error("giosg broke at once");
  };
  assert.doesNotThrow(() => r.load("capture.js", DATA));
});

test("leaks no globals", () => {
  const p = page();
  fakeGiosg(p.window);
  const before = Object.keys(p.window).sort();
  p.load("capture.js", DATA);
  assert.deepEqual(Object.keys(p.window).sort(), before);
});
