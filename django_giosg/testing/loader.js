/*
 * A stand-in for giosg's loader (https://service.giosg.com/live2/<organization id>), served by
 * django-giosg's simulator. It implements only the browser API that django-giosg's scripts use:
 *
 *   _giosg(function () { … })                 runs once the client is ready
 *   window.GiosgClient.visitorGidDeferred     resolves when the visitor id is known
 *   giosg.unpackedVisitorCid, giosg.rooms     the visitor id and the rooms of the page
 *   _giosg("chat", "close", {all: true})      ends the visitor's open chats; with
 *                                             clearHistory: true also forgets the history
 *   _giosg("visitor", "removeAll", rooms)     removes the visitor's variables in rooms
 *
 * On a real page it also draws a small chat box, as giosg's widget would: the visitor opens it
 * and sends a line, which starts a real open chat in the simulator (`giosgSimulator.say(text)`
 * does the same from code); `chat close` visibly ends it. Like giosg's widget, it keeps the
 * chat's history on the device (localStorage) and shows it again on the next page, even after
 * the chat ended, until a `chat close` with `clearHistory: true`; `giosgSimulator.history()`
 * returns it, and `giosgSimulator.historyCleared` counts the clears.
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

  var simulator = (window.giosgSimulator = {
    visitorId: visitorId,
    calls: [],
    requests: [],
    historyCleared: 0,
  });
  var historyKey = "giosg-simulator-history:" + organizationId;

  function readHistory() {
    try {
      var lines = JSON.parse(localStorage.getItem(historyKey) || "[]");
      return Array.isArray(lines) ? lines : [];
    } catch (err) {
      return [];
    }
  }

  function keepHistory(lines) {
    try {
      if (lines.length) localStorage.setItem(historyKey, JSON.stringify(lines));
      else localStorage.removeItem(historyKey);
    } catch (err) {
      // storage blocked: no history, as in giosg's widget
    }
  }

  simulator.history = readHistory;

  function chatShown(chat) {
    keepHistory(chat.messages);
    chatBox.show(chat);
  }
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
      var options = command[2] || {};
      if (options.clearHistory === true) {
        keepHistory([]);
        simulator.historyCleared += 1;
      }
      return post("close", {}).then(function (data) {
        chatBox.closed(options.hide === true, options.clearHistory === true);
        return data;
      });
    }
    if (command[0] === "visitor" && command[1] === "removeAll") {
      return post("remove", { rooms: roomIds(command[2]) });
    }
    return undefined; // other commands are accepted and recorded, nothing more
  }

  window._giosg = function () {
    return run(arguments);
  };

  simulator.say = function (text) {
    return post("chat", { text: text }).then(function (data) {
      if (data.chat) chatShown(data.chat);
      return data;
    });
  };

  function becomeReady() {
    post("visit", {}).then(function (data) {
      window.giosg.unpackedVisitorCid = visitorId;
      window.giosg.rooms = data.rooms;
      ready = true;
      resolveVisitor();
      if (data.chat) chatShown(data.chat);
      waiting.splice(0).forEach(callSafely);
    });
  }

  // The chat box: giosg's widget reduced to a button, the chat's lines and a field. Styled
  // through the CSSOM, which a strict Content-Security-Policy allows. Not drawn without a DOM.
  var chatBox = (function () {
    var nothing = function () {};
    var none = { draw: nothing, show: nothing, closed: nothing };
    if (typeof document.createElement !== "function") return none;
    var box, toggle, pane, lines, status, input;

    function element(tag, id, style, text) {
      var node = document.createElement(tag);
      if (id) node.id = "giosg-sim-chat" + id;
      Object.assign(node.style, style || {});
      if (text) node.textContent = text;
      return node;
    }

    function showLines(texts) {
      lines.textContent = "";
      texts.forEach(function (text) {
        lines.appendChild(element("li", "", {}, text));
      });
    }

    function draw() {
      if (box) return;
      var font = "14px/1.4 system-ui, sans-serif";
      box = element("div", "", {
        position: "fixed", right: "16px", bottom: "16px", width: "280px", zIndex: "2147483000",
        font: font, color: "#1d2733",
      });
      toggle = element("button", "-toggle", {
        float: "right", padding: "8px 14px", border: "0", borderRadius: "18px",
        background: "#0b7a75", color: "#fff", font: font, cursor: "pointer",
      }, "Chat with us");
      pane = element("div", "-pane", {
        clear: "both", display: "none", marginBottom: "8px", padding: "10px",
        background: "#fff", border: "1px solid #c9d3dd", borderRadius: "8px",
        boxShadow: "0 4px 14px rgba(0,0,0,.15)",
      });
      pane.appendChild(element("strong", "", {}, "Chat (giosg simulator)"));
      lines = element("ol", "-lines", { margin: "8px 0", paddingLeft: "20px", minHeight: "1em" });
      status = element("p", "-status", { margin: "4px 0", color: "#5b6875" }, "No chat yet.");
      var form = element("form", "-form", { display: "flex", gap: "6px" });
      input = element("input", "-input", { flex: "1", font: font, padding: "4px" });
      input.placeholder = "Type a line";
      input.maxLength = 500;
      form.appendChild(input);
      form.appendChild(element("button", "-send", { font: font }, "Send"));
      pane.appendChild(lines);
      pane.appendChild(status);
      pane.appendChild(form);
      box.appendChild(pane);
      box.appendChild(toggle);
      document.body.appendChild(box);
      var history = readHistory();
      if (history.length) {
        showLines(history); // the last chat's lines, as giosg's widget shows them again
        status.textContent = "Earlier chat.";
      }
      toggle.addEventListener("click", function () {
        open(pane.style.display === "none");
      });
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var text = input.value.trim();
        if (!text) return;
        input.value = "";
        simulator.say(text);
      });
    }

    function open(yes) {
      pane.style.display = yes ? "block" : "none";
      if (yes) input.focus();
    }

    function later(fn) {
      if (document.body) fn();
      else document.addEventListener("DOMContentLoaded", fn);
    }

    return {
      draw: function () {
        later(draw);
      },
      show: function (chat) {
        later(function () {
          draw();
          showLines(chat.messages);
          status.textContent = "Chat open.";
          toggle.textContent = "Chat open";
          open(true);
        });
      },
      closed: function (hide, clearHistory) {
        later(function () {
          draw();
          if (clearHistory) showLines([]);
          status.textContent = "This chat has ended.";
          toggle.textContent = "Chat ended";
          if (hide) open(false);
        });
      },
    };
  })();

  queued.forEach(run);
  chatBox.draw();
  if (params.get("never_ready") !== "1") {
    setTimeout(becomeReady, Number(params.get("delay_ms")) || 0);
  }
})();
