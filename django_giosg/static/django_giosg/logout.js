/*
 * django-giosg: the browser's share of a logout, rendered by {% giosg_logout %} on the first page
 * after it. It closes the visitor's chats (hiding the window) and removes the visitor variables
 * in the rooms they were set in, so that the next person on this device sees neither.
 *
 *   data-rooms   space-separated room ids
 *
 * Through giosg's _giosg queue the commands wait until giosg has loaded. Never throws.
 */
(function (window) {
  "use strict";
  try {
    var script = document.currentScript;
    var giosg = window._giosg;
    if (!script || typeof giosg !== "function") return; // giosg is blocked or not on the page

    var rooms = (script.getAttribute("data-rooms") || "").split(/\s+/).filter(Boolean);
    giosg("chat", "close", { all: true, hide: true });
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
