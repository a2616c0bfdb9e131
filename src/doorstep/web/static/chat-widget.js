/* Doorstep web chat: embed with one tag, no dependencies.
 *   <script src="/static/chat-widget.js" defer></script>
 * Optional: data-tracking-token="..." on the tag (or <meta name="doorstep-tracking-token" content="...">, or
 * window.DoorstepChat = {trackingToken: "..."}) verifies the customer for that order; data-base-url="https://..."
 * when the page is served from another origin. Messages are polled every 1.5 s while the panel is open. */
(function () {
  "use strict";
  if (window.__doorstepChatLoaded) { return; }
  window.__doorstepChatLoaded = true;
  var script = document.currentScript || document.querySelector('script[src*="chat-widget.js"]');
  var config = window.DoorstepChat || {};
  var base = (config.baseUrl || (script && script.getAttribute("data-base-url")) || "").replace(/\/$/, "");
  var POLL_MS = 1500;
  var STORE_KEY = "doorstep-chat-session";

  function trackingToken() {
    if (config.trackingToken) { return config.trackingToken; }
    if (script && script.getAttribute("data-tracking-token")) { return script.getAttribute("data-tracking-token"); }
    var meta = document.querySelector('meta[name="doorstep-tracking-token"]');
    if (meta && meta.content) { return meta.content; }
    var fromQuery = new URLSearchParams(window.location.search).get("token");
    if (fromQuery) { return fromQuery; }
    var path = window.location.pathname.match(/^\/track\/([^\/?#]+)/);
    return path ? decodeURIComponent(path[1]) : null;
  }

  var style = document.createElement("style");
  style.textContent = [
    ".dsc-launch{position:fixed;right:1rem;bottom:1rem;z-index:2147483000;background:#0b5cad;color:#fff;border:0;",
    "border-radius:999px;padding:.75rem 1.1rem;font:600 1rem system-ui,sans-serif;cursor:pointer;box-shadow:0 2px 8px rgba(0,0,0,.25)}",
    ".dsc-launch:focus-visible,.dsc-panel button:focus-visible,.dsc-panel input:focus-visible{outline:3px solid #ffbf47;outline-offset:2px}",
    ".dsc-panel{position:fixed;right:1rem;bottom:4.5rem;z-index:2147483000;width:min(360px,calc(100vw - 2rem));height:min(520px,70vh);",
    "display:flex;flex-direction:column;background:#fff;color:#1b1f24;border:1px solid #d5dbe3;border-radius:12px;",
    "box-shadow:0 6px 24px rgba(0,0,0,.2);font:15px/1.4 system-ui,sans-serif}",
    ".dsc-panel[hidden]{display:none}",
    ".dsc-head{display:flex;justify-content:space-between;align-items:center;padding:.6rem .8rem;background:#0f2740;color:#fff;border-radius:12px 12px 0 0}",
    ".dsc-head button{background:transparent;color:#fff;border:0;font-size:1.2rem;cursor:pointer}",
    ".dsc-log{flex:1;overflow-y:auto;padding:.6rem;margin:0;list-style:none}",
    ".dsc-msg{margin:.35rem 0;padding:.45rem .65rem;border-radius:10px;max-width:85%;white-space:pre-wrap;word-wrap:break-word}",
    ".dsc-msg.customer{background:#0b5cad;color:#fff;margin-left:auto}",
    ".dsc-msg.bot,.dsc-msg.system{background:#eef1f5}.dsc-msg.agent{background:#dcefe2}",
    ".dsc-form{display:flex;gap:.4rem;padding:.5rem;border-top:1px solid #d5dbe3}",
    ".dsc-form input{flex:1;padding:.5rem;border:1px solid #8a96a3;border-radius:6px;font:inherit}",
    ".dsc-form button{padding:.5rem .8rem;border:0;border-radius:6px;background:#0b5cad;color:#fff;font:inherit;cursor:pointer}",
    ".dsc-error{color:#b3261e;padding:0 .6rem;font-size:.85rem}"
  ].join("");
  document.head.appendChild(style);

  var launch = document.createElement("button");
  launch.type = "button";
  launch.className = "dsc-launch";
  launch.textContent = "Chat with us";
  launch.setAttribute("aria-expanded", "false");
  launch.setAttribute("aria-controls", "doorstep-chat");

  var panel = document.createElement("section");
  panel.id = "doorstep-chat";
  panel.className = "dsc-panel";
  panel.hidden = true;
  panel.setAttribute("aria-label", "Chat");
  panel.innerHTML = '<div class="dsc-head"><strong>Chat</strong><button type="button" aria-label="Close chat">×</button></div>' +
    '<ol class="dsc-log" aria-live="polite"></ol><div class="dsc-error" role="alert"></div>' +
    '<form class="dsc-form"><label for="dsc-input" style="position:absolute;left:-9999px">Your message</label>' +
    '<input id="dsc-input" name="text" autocomplete="off" maxlength="2000" placeholder="Type your message…" required>' +
    '<button type="submit">Send</button></form>';
  document.body.appendChild(launch);
  document.body.appendChild(panel);

  var log = panel.querySelector(".dsc-log");
  var errorBox = panel.querySelector(".dsc-error");
  var form = panel.querySelector("form");
  var input = panel.querySelector("input");
  var session = null;
  var lastId = null;
  var seen = {};
  var timer = null;

  function api(method, path, body) {
    var headers = {"Content-Type": "application/json"};
    if (session) { headers["X-Chat-Token"] = session.token; }
    return fetch(base + path, {method: method, headers: headers, body: body ? JSON.stringify(body) : undefined})
      .then(function (r) {
        if (!r.ok) { return r.json().catch(function () { return {}; }).then(function (p) {
          var err = new Error(p.detail || ("HTTP " + r.status)); err.status = r.status; throw err; }); }
        return r.json();
      });
  }

  function show(messages) {
    messages.forEach(function (m) {
      if (seen[m.id]) { return; }
      seen[m.id] = true;
      var li = document.createElement("li");
      li.className = "dsc-msg " + m.author;
      li.setAttribute("data-author", m.author);
      li.textContent = m.body;
      log.appendChild(li);
      lastId = m.id;
    });
    log.scrollTop = log.scrollHeight;
  }

  function poll() {
    if (!session) { return Promise.resolve(); }
    var q = lastId ? "?after=" + encodeURIComponent(lastId) : "";
    return api("GET", "/chat/sessions/" + session.id + "/messages" + q).then(function (page) {
      errorBox.textContent = "";
      show(page.messages);
    }).catch(function (e) {
      if (e.status === 403 || e.status === 404) { sessionStorage.removeItem(STORE_KEY); session = null; start(); }
      else { errorBox.textContent = "Connection problem, retrying…"; }
    });
  }

  function start() {
    var saved = null;
    try { saved = JSON.parse(sessionStorage.getItem(STORE_KEY) || "null"); } catch (e) { saved = null; }
    if (saved && saved.id && saved.token) { session = saved; return poll(); }
    return api("POST", "/chat/sessions", {tracking_token: trackingToken()}).then(function (s) {
      session = {id: s.id, token: s.token};
      sessionStorage.setItem(STORE_KEY, JSON.stringify(session));
      show(s.messages);
    }).catch(function () { errorBox.textContent = "The chat is not available right now."; });
  }

  function open() {
    panel.hidden = false;
    launch.setAttribute("aria-expanded", "true");
    (session ? poll() : start()).then(function () { input.focus(); });
    if (!timer) { timer = setInterval(poll, POLL_MS); }
  }

  function close() {
    panel.hidden = true;
    launch.setAttribute("aria-expanded", "false");
    if (timer) { clearInterval(timer); timer = null; }
    launch.focus();
  }

  launch.addEventListener("click", function () { if (panel.hidden) { open(); } else { close(); } });
  panel.querySelector(".dsc-head button").addEventListener("click", close);
  panel.addEventListener("keydown", function (e) { if (e.key === "Escape") { close(); } });
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (!text || !session) { return; }
    input.value = "";
    var clientId = Date.now().toString(36) + Math.random().toString(36).slice(2, 10);
    api("POST", "/chat/sessions/" + session.id + "/messages", {text: text, client_id: clientId})
      .then(function () { return poll(); })
      .then(function () { setTimeout(poll, 300); })
      .catch(function (err) { errorBox.textContent = err.message; input.value = text; });
  });
  window.DoorstepChatWidget = {open: open, close: close};
})();
