/*
 * django-giosg: tells the Django site which giosg visitor this browser is. Rendered by
 * {% giosg_capture %}, configured by the data- attributes of its own <script> tag:
 *
 *   data-endpoint      the capture endpoint's URL
 *   data-visitor-id    the visitor id the session already has ("" if none)
 *   data-wait-ms       how long to wait for giosg before giving up quietly
 *   data-csrf-token    the CSRF token, sent in the header named by data-csrf-header
 *   data-send-rooms    "true": also send the rooms giosg reports for the page
 *
 * Once giosg is ready (_giosg(fn), then GiosgClient.visitorGidDeferred) it reads
 * giosg.unpackedVisitorCid and POSTs it only when it differs from the known id; it keeps watching,
 * and posts again if the id changes. A refused id is not sent again from this page. No globals,
 * no dependencies, and it never throws into the page.
 */
(function (window) {
  "use strict";

  var POLL_MS = 2000; // how often a changed visitor id is looked for
  var MAX_POSTS = 5; // per page, so that a failing endpoint is not hammered

  function configuration(script) {
    var attr = function (name) {
      return script.getAttribute("data-" + name) || "";
    };
    return {
      endpoint: attr("endpoint"),
      known: attr("visitor-id"),
      waitMs: Number(attr("wait-ms")) || 15000,
      csrfToken: attr("csrf-token"),
      csrfHeader: attr("csrf-header") || "X-CSRFToken",
      sendRooms: attr("send-rooms") === "true",
    };
  }

  function visitorId() {
    var giosg = window.giosg;
    var id = giosg && giosg.unpackedVisitorCid;
    return typeof id === "string" && id ? id : null;
  }

  function pageRooms() {
    var rooms = window.giosg && window.giosg.rooms;
    if (!Array.isArray(rooms)) return [];
    return rooms.filter(function (room) {
      return typeof room === "string";
    });
  }

  function start(config) {
    var known = config.known;
    var refused = Object.create(null); // ids the endpoint refused (4xx)
    var posts = 0;
    var busy = false;

    function post(id) {
      busy = true;
      posts += 1;
      var body = { visitor_id: id };
      if (config.sendRooms) body.rooms = pageRooms();
      var headers = { "Content-Type": "application/json" };
      headers[config.csrfHeader] = config.csrfToken;
      window
        .fetch(config.endpoint, {
          method: "POST",
          credentials: "same-origin",
          headers: headers,
          body: JSON.stringify(body),
        })
        .then(
          function (response) {
            if (response.ok) known = id;
            else if (response.status < 500) refused[id] = true; // 4xx: sending again won't help
          },
          function () {} // offline: the next check tries again
        )
        .then(function () {
          busy = false;
        });
    }

    function check() {
      try {
        var id = visitorId();
        if (id && id !== known && !busy && !refused[id] && posts < MAX_POSTS) post(id);
      } catch (err) {
        // never into the page
      }
    }

    check();
    window.setInterval(check, POLL_MS);
  }

  function whenReady(waitMs, callback) {
    var settled = false;
    var timer = window.setTimeout(function () {
      settled = true; // giosg is blocked or slow: give up quietly
    }, waitMs);
    function ready() {
      if (settled) return;
      settled = true;
      window.clearTimeout(timer);
      callback();
    }
    window._giosg(function () {
      try {
        var client = window.GiosgClient;
        var deferred = client && client.visitorGidDeferred;
        if (deferred && typeof deferred.then === "function") deferred.then(ready);
        else ready();
      } catch (err) {
        // never into giosg's loader either
      }
    });
  }

  try {
    var script = document.currentScript;
    if (!script || typeof window._giosg !== "function" || typeof window.fetch !== "function") {
      return; // no giosg on the page (blocked, or no {% giosg_script %}), or a very old browser
    }
    var config = configuration(script);
    if (!config.endpoint) return;
    whenReady(config.waitMs, function () {
      start(config);
    });
  } catch (err) {
    // The page must never break because of giosg.
  }
})(window);
