// "What giosg sees": polls the site's /giosg-state/ view once a second and shows the simulator's
// variables and chats for this session's visitor. Only textContent: the values are untrusted.
(function () {
  "use strict";

  var panel = document.getElementById("giosg-panel");
  if (!panel) return;
  var body = document.getElementById("giosg-panel-body");

  function el(tag, text, attributes) {
    var node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    Object.keys(attributes || {}).forEach(function (name) {
      node.setAttribute(name, attributes[name]);
    });
    return node;
  }

  function room(data) {
    var section = el("section", undefined, { class: "room", "data-room": data.id });
    var title = el("h3", data.name + " ");
    var tag = data.configured ? "in ROOM_IDS" : data.shared ? "shared to you" : "not configured";
    title.appendChild(el("span", tag, { class: "tag" }));
    section.appendChild(title);
    var keys = Object.keys(data.variables);
    if (keys.length) {
      var list = el("dl", undefined, { class: "variables" });
      keys.forEach(function (key) {
        list.appendChild(el("dt", key));
        list.appendChild(el("dd", data.variables[key]));
      });
      section.appendChild(list);
    } else {
      section.appendChild(el("p", "No variables.", { class: "muted no-variables" }));
    }
    if (data.chats.length) {
      var chats = el("ul", undefined, { class: "chats" });
      data.chats.forEach(function (chat) {
        var state = chat.is_ended ? "ended" : "open";
        var said = chat.messages.length ? ": “" + chat.messages.join("”, “") + "”" : "";
        chats.appendChild(
          el("li", "chat " + chat.id.slice(0, 8) + " " + state + said, {
            class: "chat",
            "data-state": state,
          }),
        );
      });
      section.appendChild(chats);
    }
    return section;
  }

  function render(data) {
    var parts = [];
    if (!data.simulator) {
      parts.push(el("p", "This site talks to the real giosg: see your giosg console."));
    } else if (!data.visitor_id) {
      parts.push(el("p", "No visitor id in this session yet: giosg's script is loading.", {
        class: "muted",
      }));
    } else {
      var who = el("p", "Visitor ");
      who.appendChild(el("code", data.visitor_id, { id: "panel-visitor-id" }));
      who.appendChild(document.createTextNode(data.user ? ", logged in as " + data.user : ", anonymous"));
      parts.push(who);
      if (data.error) parts.push(el("p", data.error, { class: "error" }));
      if (!data.error && !data.rooms.length) parts.push(el("p", "giosg knows nothing about this visitor yet.", { class: "muted" }));
      data.rooms.forEach(function (data) {
        parts.push(room(data));
      });
    }
    body.replaceChildren.apply(body, parts);
    var visitor = document.getElementById("home-visitor-id");
    if (visitor && data.visitor_id) visitor.textContent = data.visitor_id;
  }

  function poll() {
    fetch(panel.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(render)
      .catch(function () {
        body.replaceChildren(el("p", "The site does not answer.", { class: "error" }));
      })
      .then(function () {
        setTimeout(poll, 1000);
      });
  }

  poll();
})();
