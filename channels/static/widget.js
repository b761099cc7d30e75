/* Frontdesk chat widget: <script src="/widget.js" data-title="..." data-color="#..." data-greeting="..."></script>
   Everything a message says is rendered as text (textContent), never as HTML. */
(function () {
  "use strict";
  var script = document.currentScript;
  var opts = {
    title: (script && script.dataset.title) || "Support",
    color: (script && script.dataset.color) || "#2563eb",
    greeting: (script && script.dataset.greeting) || "Hi! How can we help?",
    open: script && script.dataset.open === "true",
  };
  var base = script ? new URL(script.src, location.href) : new URL(location.href);
  var wsUrl = (base.protocol === "https:" ? "wss://" : "ws://") + base.host + "/ws/chat";
  var STORE = "frontdesk:" + base.host;

  var state = load();
  // lastSeq lives in memory: a new page load has shown nothing yet and replays everything,
  // a reconnect within the page asks only for what it missed.
  var ws = null, backoff = 500, pending = {}, counter = 0, lastSeq = 0;

  function load() {
    try { return JSON.parse(localStorage.getItem(STORE)) || {}; } catch (e) { return {}; }
  }
  function save() { localStorage.setItem(STORE, JSON.stringify(state)); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function chatIcon() {
    // a speech bubble, drawn (emoji fonts are not everywhere)
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "26");
    svg.setAttribute("height", "26");
    svg.setAttribute("aria-hidden", "true");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("fill", "currentColor");
    path.setAttribute("d", "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm3 6.5a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01z");
    svg.appendChild(path);
    return svg;
  }

  var css = el("style");
  css.textContent =
    ".fd-launch{position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;border:0;" +
    "color:#fff;display:flex;align-items:center;justify-content:center;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);z-index:2147483000}" +
    ".fd-panel{position:fixed;right:20px;bottom:88px;width:360px;max-width:calc(100vw - 24px);height:520px;" +
    "max-height:calc(100vh - 110px);background:#fff;border-radius:14px;box-shadow:0 8px 30px rgba(0,0,0,.25);" +
    "display:flex;flex-direction:column;overflow:hidden;font:14px/1.4 system-ui,sans-serif;z-index:2147483000}" +
    ".fd-panel[hidden]{display:none}" +
    ".fd-head{color:#fff;padding:12px 14px;font-weight:600;display:flex;justify-content:space-between;align-items:center}" +
    ".fd-head button{background:none;border:0;color:#fff;font-size:20px;cursor:pointer}" +
    ".fd-log{flex:1;overflow-y:auto;padding:12px;background:#f6f7f9;display:flex;flex-direction:column;gap:6px}" +
    ".fd-msg{max-width:80%;padding:8px 11px;border-radius:12px;white-space:pre-wrap;word-wrap:break-word}" +
    ".fd-customer{align-self:flex-end;color:#fff}.fd-bot,.fd-agent{align-self:flex-start;background:#fff;border:1px solid #e3e5e8}" +
    ".fd-agent{border-color:#f5b342}.fd-who{font-size:11px;color:#6b7280;margin-bottom:2px}" +
    ".fd-status{align-self:center;font-size:12px;color:#6b7280}" +
    ".fd-buttons{display:flex;flex-wrap:wrap;gap:6px;align-self:flex-start}" +
    ".fd-buttons button{border:1px solid;background:#fff;border-radius:14px;padding:5px 10px;cursor:pointer;font:inherit}" +
    ".fd-typing{font-size:12px;color:#6b7280;padding:0 12px 4px;min-height:16px;background:#f6f7f9}" +
    ".fd-form{display:flex;border-top:1px solid #e3e5e8}.fd-form input{flex:1;border:0;padding:12px;font:inherit}" +
    ".fd-form button{border:0;color:#fff;padding:0 16px;font:inherit;cursor:pointer}" +
    ".fd-conn{font-size:11px;font-weight:400;opacity:.85}" +
    "@media (max-width:480px){.fd-panel{right:0;bottom:0;width:100vw;max-width:100vw;height:100vh;max-height:100vh;border-radius:0}}";
  document.head.appendChild(css);

  var launch = el("button", "fd-launch");
  launch.appendChild(chatIcon());
  launch.style.background = opts.color;
  launch.setAttribute("aria-label", "Open chat: " + opts.title);
  launch.setAttribute("aria-expanded", "false");
  var panel = el("section", "fd-panel");
  panel.hidden = true;
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", opts.title);
  var head = el("div", "fd-head");
  head.style.background = opts.color;
  var title = el("span", "", opts.title);
  var conn = el("span", "fd-conn", "");
  var close = el("button", "", "\u00D7");
  close.setAttribute("aria-label", "Close chat");
  var titleBox = el("div");
  titleBox.appendChild(title); titleBox.appendChild(el("br")); titleBox.appendChild(conn);
  head.appendChild(titleBox); head.appendChild(close);
  var log = el("div", "fd-log");
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "polite");
  var typing = el("div", "fd-typing", "");
  var form = el("form", "fd-form");
  var input = el("input");
  input.type = "text";
  input.placeholder = "Type your message…";
  input.setAttribute("aria-label", "Your message");
  input.maxLength = 2000;
  var send = el("button", "", "Send");
  send.type = "submit";
  send.style.background = opts.color;
  form.appendChild(input); form.appendChild(send);
  panel.appendChild(head); panel.appendChild(log); panel.appendChild(typing); panel.appendChild(form);
  document.body.appendChild(launch); document.body.appendChild(panel);

  function toggle(open) {
    panel.hidden = !open;
    launch.setAttribute("aria-expanded", String(open));
    if (open) { input.focus(); log.scrollTop = log.scrollHeight; } else { launch.focus(); }
  }
  launch.addEventListener("click", function () { toggle(panel.hidden); });
  close.addEventListener("click", function () { toggle(false); });
  panel.addEventListener("keydown", function (e) { if (e.key === "Escape") toggle(false); });

  var shown = {};
  var greeted = false;
  function greet(seq) {
    if (greeted || seq > 0) return;
    greeted = true;
    addBubble("bot", opts.greeting);
  }
  function addBubble(role, text, id) {
    var wrap = el("div", "fd-msg fd-" + role);
    if (role === "customer") wrap.style.background = opts.color;
    if (role === "agent") wrap.appendChild(el("div", "fd-who", "Support agent"));
    wrap.appendChild(document.createTextNode(text));
    if (id) wrap.dataset.id = id;
    log.appendChild(wrap);
    log.scrollTop = log.scrollHeight;
    return wrap;
  }
  function addButtons(buttons) {
    var box = el("div", "fd-buttons");
    buttons.forEach(function (b) {
      var btn = el("button", "", b.title);
      btn.type = "button";
      btn.style.borderColor = opts.color; btn.style.color = opts.color;
      btn.addEventListener("click", function () { submit(b.payload); box.remove(); });
      box.appendChild(btn);
    });
    log.appendChild(box);
    log.scrollTop = log.scrollHeight;
  }
  var STATUS_TEXT = { waiting: "Waiting for a member of our team…", agent: "An agent joined the conversation.",
                      bot: "You are chatting with our assistant again.", closed: "This conversation was closed." };

  function onEvent(f) {
    if (typeof f.seq === "number") {
      if (shown[f.seq]) return;
      shown[f.seq] = true;
      if (f.seq > lastSeq) lastSeq = f.seq;
    }
    if (f.type === "message") {
      typing.textContent = "";
      if (f.role === "customer" && f.client_id && pending[f.client_id]) {
        delete pending[f.client_id];
        return;
      }
      addBubble(f.role, f.text);
      if (f.buttons && f.buttons.length) addButtons(f.buttons);
    } else if (f.type === "status") {
      typing.textContent = "";
      log.appendChild(el("div", "fd-status", STATUS_TEXT[f.status] || f.status));
      log.scrollTop = log.scrollHeight;
      if (f.status === "closed") { delete state.conversation_id; delete state.token; save(); }
    }
  }

  function connect() {
    conn.textContent = "connecting…";
    ws = new WebSocket(wsUrl);
    ws.onopen = function () {
      backoff = 500;
      conn.textContent = "online";
      var hello = { type: "hello", last_seq: lastSeq };
      if (state.conversation_id) { hello.conversation_id = state.conversation_id; hello.token = state.token; }
      ws.send(JSON.stringify(hello));
      Object.keys(pending).forEach(function (id) { ws.send(JSON.stringify(pending[id].frame)); });
    };
    ws.onmessage = function (m) {
      var f = JSON.parse(m.data);
      if (f.type === "welcome") {
        if (f.conversation_id !== state.conversation_id) { shown = {}; lastSeq = 0; }
        state.conversation_id = f.conversation_id; state.token = f.token; save();
        greet(f.seq);
      } else if (f.type === "ack") {
        if (pending[f.client_id]) { pending[f.client_id].acked = true; }
        shown[f.seq] = true;
        if (f.seq > lastSeq) lastSeq = f.seq;
        delete pending[f.client_id];
      } else if (f.type === "typing") {
        typing.textContent = "Assistant is typing…";
      } else if (f.type === "error") {
        addBubble("bot", "⚠ " + f.message);
      } else {
        onEvent(f);
      }
    };
    ws.onclose = function (e) {
      conn.textContent = "reconnecting…";
      if (e.code === 4401) { delete state.conversation_id; delete state.token; save(); }
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }

  function submit(text) {
    text = (text || "").trim();
    if (!text) return;
    var id = Date.now().toString(36) + "-" + (counter++) + "-" + Math.random().toString(36).slice(2, 8);
    var frame = { type: "message", client_id: id, text: text };
    pending[id] = { frame: frame };
    addBubble("customer", text, id);
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(frame));
  }
  form.addEventListener("submit", function (e) { e.preventDefault(); submit(input.value); input.value = ""; });

  connect();
  if (opts.open) toggle(true);
  window.Frontdesk = { open: function () { toggle(true); }, close: function () { toggle(false); } };
})();
