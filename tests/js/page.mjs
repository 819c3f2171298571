// A fake page for django-giosg's static scripts, run in a node:vm context: a <script> element
// with data- attributes, timers that run only when a test moves the clock, and a recording fetch.
import { readFileSync } from "node:fs";
import vm from "node:vm";

const STATIC = new URL("../../django_giosg/static/django_giosg/", import.meta.url);

export function source(name) {
  return readFileSync(new URL(name, STATIC), "utf8");
}

// Lets promise callbacks (fetch answers, deferreds) run.
export const settle = () => new Promise((resolve) => setImmediate(resolve));

export function page({ globals = {} } = {}) {
  let now = 0;
  let nextTimer = 1;
  const timers = new Map();
  const fetches = [];
  const answers = [];
  const window = {
    JSON,
    Number,
    Array,
    Promise,
    console,
    document: { currentScript: null },
    setTimeout: (fn, ms) => {
      timers.set(nextTimer, { fn, at: now + ms });
      return nextTimer++;
    },
    setInterval: (fn, ms) => {
      timers.set(nextTimer, { fn, at: now + ms, every: ms });
      return nextTimer++;
    },
    clearTimeout: (id) => timers.delete(id),
    fetch: (url, options) => {
      // a plain copy: objects from the page's realm do not deepEqual the test's own
      fetches.push(JSON.parse(JSON.stringify({ url, ...options, body: JSON.parse(options.body) })));
      const answer = answers.shift() ?? { status: 204 };
      if (answer.network) return Promise.reject(new TypeError("Failed to fetch"));
      return Promise.resolve({ ok: answer.status < 300, status: answer.status });
    },
    ...globals,
  };
  window.window = window;
  vm.createContext(window);

  return {
    window,
    fetches,
    // answers for the next fetches: {status} or {network: true}; 204 when none is left
    answer: (...next) => answers.push(...next),
    timers: () => [...timers.values()],
    // Runs `name` as if from <script src=… data-…>; with `data` null, as if no element ran it.
    load(name, data = {}) {
      const attributes = Object.fromEntries(
        Object.entries(data ?? {}).map(([k, v]) => [`data-${k}`, v]),
      );
      window.document.currentScript = data && {
        getAttribute: (attribute) => (attribute in attributes ? attributes[attribute] : null),
      };
      vm.runInContext(source(name), window);
      window.document.currentScript = null;
    },
    // Moves the clock, running the timers that fall due (and letting promises settle).
    async advance(ms) {
      const until = now + ms;
      await settle(); // what is already due at `now` comes first
      for (;;) {
        const due = [...timers.entries()]
          .filter(([, t]) => t.at <= until)
          .sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        const [id, timer] = due;
        now = timer.at;
        if (timer.every) timer.at += timer.every;
        else timers.delete(id);
        timer.fn();
        await settle();
      }
      now = until;
      await settle();
    },
  };
}

// giosg as a page sees it: _giosg(fn) runs fn once giosg is ready; the visitor id is known once
// `identify` is called.
export function fakeGiosg(window) {
  const ready = [];
  let resolveVisitor;
  window.giosg = { unpackedVisitorCid: undefined, rooms: [] };
  window.GiosgClient = { visitorGidDeferred: new Promise((resolve) => (resolveVisitor = resolve)) };
  window._giosg = (fn) => ready.push(fn);
  return {
    becomeReady: () => ready.splice(0).forEach((fn) => fn()),
    identify(id, rooms = []) {
      window.giosg.unpackedVisitorCid = id;
      window.giosg.rooms = rooms;
      resolveVisitor();
    },
  };
}
