/*
 * A stand-in for giosg's loader (https://service.giosg.com/live2/<organization id>), served by
 * django-giosg's simulator. It implements only the browser API that django-giosg's scripts use:
 *
 *   _giosg(function () { … })                 runs once the client is ready
 *   window.GiosgClient.visitorGidDeferred     resolves when the visitor id is known
 *   giosg.unpackedVisitorCid, giosg.rooms     the visitor id and the rooms of the page
 *   _giosg("chat", "close", {all: true})      ends the visitor's open chats
 *   _giosg("visitor", "removeAll", rooms)     removes the visitor's variables in rooms
 *
 * Commands queued in `_giosg._e` by giosg's embed snippet before this script loaded run first.
 * Query parameters of the script's URL shape a test: `visitor_id` (a fixed id instead of one per
 * browser), `delay_ms` (time until ready), `never_ready=1` (giosg blocked, never ready). Every
 * command is recorded in `window.giosgSimulator.calls`.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var src = new URL(script && script.src ? script.src : location.href, location.href);
  var base = src.origin;
  var organizationId = src.pathname.split("/").filter(Boolean).pop();
  var params = src.searchParams;

  function newVisitorId() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map
      .call(bytes, function (b) {
        return ("0" + b.toString(16)).slice(-2);
      })
      .join("");
  }

  function browserVisitorId() {
    var key = "giosg-simulator-visitor:" + organizationId;
    try {
      var stored = localStorage.getItem(key);
      if (!stored) {
        stored = newVisitorId();
        localStorage.setItem(key, stored);
      }
      return stored;
    } catch (err) {
      return newVisitorId(); // storage blocked: a new visitor on every page
    }
  }

  var visitorId = params.get("visitor_id") || browserVisitorId();
  var queued = (window._giosg && window._giosg._e) || [];
  var ready = false;
  var waiting = [];
  var resolveVisitor;

  var simulator = (window.giosgSimulator = { visitorId: visitorId, calls: [], requests: [] });
  window.giosg = { unpackedVisitorCid: undefined, rooms: [] };
  window.GiosgClient = {
    visitorGidDeferred: new Promise(function (resolve) {
      resolveVisitor = resolve;
    }),
  };

  function post(action, data) {
    data.visitor_id = visitorId;
    var request = fetch(base + "/_simulator/browser/" + action, {
      method: "POST",
      body: JSON.stringify(data), // text/plain: no CORS preflight
      keepalive: true, // survives the page being left
    }).then(function (response) {
      return response.json();
    });
    simulator.requests.push(request);
    return request;
  }

  function callSafely(fn) {
    try {
      fn();
    } catch (err) {
      console.error("giosg simulator: a ready callback failed", err);
    }
  }

  function roomIds(rooms) {
    if (!rooms) return null;
    return [].concat(rooms).map(function (room) {
      return typeof room === "string" ? room : room.id;
    });
  }

  function run(args) {
    if (typeof args[0] === "function") {
      if (ready) callSafely(args[0]);
      else waiting.push(args[0]);
      return undefined;
    }
    var command = Array.prototype.slice.call(args);
    simulator.calls.push(command);
    if (command[0] === "chat" && command[1] === "close") {
      return post("close", {});
    }
    if (command[0] === "visitor" && command[1] === "removeAll") {
      return post("remove", { rooms: roomIds(command[2]) });
    }
    return undefined; // other commands are accepted and recorded, nothing more
  }

  window._giosg = function () {
    return run(arguments);
  };

  function becomeReady() {
    post("visit", {}).then(function (data) {
      window.giosg.unpackedVisitorCid = visitorId;
      window.giosg.rooms = data.rooms;
      ready = true;
      resolveVisitor();
      waiting.splice(0).forEach(callSafely);
    });
  }

  queued.forEach(run);
  if (params.get("never_ready") !== "1") {
    setTimeout(becomeReady, Number(params.get("delay_ms")) || 0);
  }
})();
