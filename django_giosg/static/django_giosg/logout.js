/*
 * django-giosg: the browser's share of an ending, rendered once by {% giosg_logout %} on the
 * first page after a logout, a user switch, a session that lost its user, or a swept expiry. It
 * closes the visitor's chats (hiding the window) and clears the widget's history on this device,
 * so that the next person on it can neither see the chats nor scroll back through them. After a
 * logout it also removes the visitor variables in the rooms they were set in.
 *
 *   data-mode    "logout": close, clear and remove; "close": close and clear only (the
 *                variables may already be the next user's)
 *   data-rooms   space-separated room ids (logout mode)
 *
 * Through giosg's _giosg queue the commands wait until giosg has loaded. Never throws.
 */
(function (window) {
  "use strict";
  try {
    var script = document.currentScript;
    var giosg = window._giosg;
    if (!script || typeof giosg !== "function") return; // giosg is blocked or not on the page

    giosg("chat", "close", { all: true, hide: true, clearHistory: true });
    if (script.getAttribute("data-mode") === "close") return;
    var rooms = (script.getAttribute("data-rooms") || "").split(/\s+/).filter(Boolean);
    if (rooms.length) {
      giosg("visitor", "removeAll", rooms.map(function (id) {
        return { id: id }; // giosg's room_information
      }));
    } else {
      giosg("visitor", "removeAll");
    }
  } catch (err) {
    // The page must never break because of giosg.
  }
})(window);
