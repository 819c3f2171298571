/*
 * django-giosg: giosg's command queue, exactly as giosg's embed snippet defines it, but from a
 * static file so that no inline script is needed. Rendered by {% giosg_script %} just before
 * giosg's loader; commands given to _giosg before the loader has arrived wait in _giosg._e.
 *
 *   data-organization-id   the organization (giosg's _giosg._c)
 *   data-host              the origin the loader comes from (giosg's _giosg._h)
 */
(function (window) {
  "use strict";
  if (typeof window._giosg === "function") return; // the loader, or a snippet, came first

  var queue = function () {
    (queue._e = queue._e || []).push(arguments);
  };
  var script = document.currentScript;
  if (script) {
    queue._c = script.getAttribute("data-organization-id");
    queue._h = script.getAttribute("data-host");
  }
  window._giosg = queue;
})(window);
