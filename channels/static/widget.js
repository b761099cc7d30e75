/* Frontdesk chat widget. One tag puts it on any page, on any origin:
     <script src="https://frontdesk.example/widget.js" data-title="Support" data-color="#0f766e"
             data-greeting="Hi! How can we help?" async></script>
   The server is the one the script came from; the protocol is docs/protocol.md, the widget
   is documented in docs/widget.md.
   Everything a message says is rendered as text (text nodes, textContent), never as HTML. */
(function () {
  "use strict";
  if (window.Frontdesk) return; // included twice: the first one serves the page

  var script = document.currentScript;
  var data = (script && script.dataset) || {};
  var opts = {
    title: data.title || "Support",
    color: data.color || "#2563eb",
    greeting: data.greeting || "Hi! How can we help?",
    open: data.open === "true",
  };
  // The websocket lives next to widget.js on the server that served it (a path prefix of a
  // reverse proxy included), whatever page embeds the script.
  var base = new URL(script && script.src ? script.src : "/widget.js", location.href);
  var wsUrl = new URL("ws/chat", base);
  wsUrl.protocol = base.protocol === "https:" ? "wss:" : "ws:";
  wsUrl = wsUrl.href;
  var STORE = "frontdesk:" + wsUrl;
  var BACKOFF_MIN = 500, BACKOFF_MAX = 10000, TYPING_MS = 20000;

  // Persisted (localStorage of the embedding page): the conversation and the messages typed
  // but not yet acknowledged, so neither a reload nor a lost connection loses them.
  var state = load();
  state.pending = Array.isArray(state.pending) ? state.pending : [];
  // In memory: what this page shows. A new page load has shown nothing and replays all.
  var shown = {}, lastSeq = 0, shownConversation = null, fresh = false;
  var ws = null, backoff = BACKOFF_MIN, retryTimer = null, typingTimer = null, counter = 0;
  var buttonsBox = null, buttonsSeq = 0;

  function load() {
    try { return JSON.parse(localStorage.getItem(STORE)) || {}; } catch (e) { return {}; }
  }
  function save() {
    // storage can be full or blocked (privacy settings): the chat then lasts the page only
    try { localStorage.setItem(STORE, JSON.stringify(state)); } catch (e) { /* page-only */ }
  }
  function forget() { delete state.conversation_id; delete state.token; save(); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function icon(d) {
    // drawn, not an emoji: emoji fonts are not everywhere
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "26");
    svg.setAttribute("height", "26");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("fill", "currentColor");
    path.setAttribute("d", d);
    svg.appendChild(path);
    return svg;
  }
  var CHAT_ICON = "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm3 6.5a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01z";
  var CLOSE_ICON = "M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12 19 17.6 17.6 19 12 13.4 6.4 19 5 17.6 10.6 12 5 6.4z";

  var css = el("style");
  css.textContent =
    ".fd-launch,.fd-panel,.fd-panel *{box-sizing:border-box}" +
    ".fd-launch{position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;border:0;padding:0;" +
    "color:#fff;display:flex;align-items:center;justify-content:center;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);z-index:2147483000}" +
    ".fd-launch:focus-visible,.fd-panel button:focus-visible{outline:3px solid #111827;outline-offset:2px}" +
    ".fd-panel{position:fixed;right:20px;bottom:88px;width:360px;max-width:calc(100vw - 24px);height:520px;" +
    "max-height:calc(100vh - 110px);background:#fff;color:#111827;border-radius:14px;box-shadow:0 8px 30px rgba(0,0,0,.25);" +
    "display:flex;flex-direction:column;overflow:hidden;font:14px/1.4 system-ui,sans-serif;text-align:left;z-index:2147483001}" +
    ".fd-panel[hidden]{display:none}" +
    ".fd-head{color:#fff;padding:10px 8px 10px 14px;display:flex;justify-content:space-between;align-items:center;gap:8px}" +
    ".fd-title{font-weight:600;font-size:15px;margin:0}" +
    ".fd-conn{display:block;font-size:11px;font-weight:400;opacity:.85}" +
    ".fd-close{background:none;border:0;color:#fff;cursor:pointer;width:36px;height:36px;padding:5px;border-radius:8px}" +
    ".fd-close svg{width:22px;height:22px}" +
    ".fd-log{flex:1;overflow-y:auto;padding:12px;background:#f6f7f9;display:flex;flex-direction:column;gap:6px}" +
    ".fd-msg{max-width:80%;padding:8px 11px;border-radius:12px;white-space:pre-wrap;overflow-wrap:anywhere}" +
    ".fd-customer{align-self:flex-end;color:#fff}" +
    ".fd-bot,.fd-agent{align-self:flex-start;background:#fff;border:1px solid #e3e5e8}" +
    ".fd-agent{border-color:#f5b342}.fd-who{font-size:11px;color:#6b7280;margin-bottom:2px}" +
    ".fd-pending{opacity:.6}" +
    ".fd-failed{opacity:.6;text-decoration:line-through}" +
    ".fd-failed-why{align-self:flex-end;font-size:12px;color:#b91c1c;max-width:80%;text-align:right}" +
    ".fd-note{align-self:center;font-size:12px;color:#4b5563;text-align:center}" +
    ".fd-buttons{display:flex;flex-wrap:wrap;gap:6px;align-self:flex-start}" +
    ".fd-buttons button{border:1px solid;background:#fff;border-radius:14px;padding:5px 10px;cursor:pointer;font:inherit}" +
    ".fd-rate{align-self:center;display:flex;align-items:center;gap:2px;font-size:13px;color:#374151}" +
    ".fd-rate button{border:0;background:none;font-size:22px;line-height:1;color:#f59e0b;cursor:pointer;padding:2px}" +
    ".fd-rate-q{margin-right:6px}" +
    ".fd-typing{font-size:12px;color:#4b5563;padding:2px 12px 4px;min-height:22px;background:#f6f7f9}" +
    ".fd-form{display:flex;border-top:1px solid #e3e5e8;background:#fff}" +
    ".fd-form input{flex:1;min-width:0;border:0;padding:12px;font:inherit;color:inherit;background:#fff}" +
    ".fd-form input:focus{outline:2px solid #9ca3af;outline-offset:-2px}" +
    ".fd-form button{border:0;color:#fff;padding:0 16px;font:inherit;font-weight:600;cursor:pointer}" +
    ".fd-hidden{position:absolute;width:1px;height:1px;margin:-1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap;border:0}" +
    // a phone: the panel is the whole screen (it covers the bubble; the header closes it)
    "@media (max-width:480px){.fd-panel{top:0;right:0;bottom:0;left:0;width:auto;height:auto;max-width:none;" +
    "max-height:none;border-radius:0}.fd-form input{font-size:16px}}";

  // --- the DOM: a launcher button and a non-modal dialog ---------------------------------
  var launch = el("button", "fd-launch");
  launch.type = "button";
  launch.appendChild(icon(CHAT_ICON));
  launch.style.background = opts.color;
  launch.setAttribute("aria-label", "Chat with " + opts.title);
  launch.setAttribute("aria-expanded", "false");
  launch.setAttribute("aria-controls", "frontdesk-panel");

  var panel = el("section", "fd-panel");
  panel.id = "frontdesk-panel";
  panel.hidden = true;
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-labelledby", "frontdesk-title");
  var head = el("div", "fd-head");
  head.style.background = opts.color;
  var titleBox = el("div");
  var title = el("h2", "fd-title", opts.title);
  title.id = "frontdesk-title";
  var conn = el("span", "fd-conn", "");
  titleBox.appendChild(title);
  titleBox.appendChild(conn);
  var close = el("button", "fd-close");
  close.type = "button";
  close.setAttribute("aria-label", "Close chat");
  close.appendChild(icon(CLOSE_ICON));
  head.appendChild(titleBox);
  head.appendChild(close);

  var log = el("div", "fd-log");
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "polite");
  log.setAttribute("aria-label", "Conversation");
  log.tabIndex = 0; // scrollable by keyboard
  var typing = el("div", "fd-typing", "");
  typing.setAttribute("role", "status");

  var form = el("form", "fd-form");
  var label = el("label", "fd-hidden", "Your message");
  label.htmlFor = "frontdesk-input";
  var input = el("input");
  input.id = "frontdesk-input";
  input.type = "text";
  input.placeholder = "Type your message…";
  input.autocomplete = "off";
  input.maxLength = 2000;
  input.setAttribute("enterkeyhint", "send");
  var send = el("button", "", "Send");
  send.type = "submit";
  send.style.background = opts.color;
  form.appendChild(label);
  form.appendChild(input);
  form.appendChild(send);
  panel.appendChild(head);
  panel.appendChild(log);
  panel.appendChild(typing);
  panel.appendChild(form);

  function toggle(open, focus) {
    panel.hidden = !open;
    launch.setAttribute("aria-expanded", String(open));
    launch.replaceChild(icon(open ? CLOSE_ICON : CHAT_ICON), launch.firstChild);
    if (open) {
      log.scrollTop = log.scrollHeight;
      if (focus !== false) input.focus();
    } else if (focus !== false) {
      launch.focus();
    }
  }
  launch.addEventListener("click", function () { toggle(panel.hidden); });
  close.addEventListener("click", function () { toggle(false); });
  panel.addEventListener("keydown", function (e) {
    if (e.key === "Escape") { e.preventDefault(); toggle(false); }
  });

  // --- the log: confirmed events in seq order, then the messages still being sent --------
  function scrollDown() { log.scrollTop = log.scrollHeight; }
  function firstPending() { return log.querySelector(".fd-pending"); }
  function place(node, seq) {
    // Events usually arrive in order (then this appends), but an ack for a message resent
    // after a reconnect can arrive after later events: keep the log in seq order.
    node.setAttribute("data-seq", String(seq));
    var before = null;
    for (var k = log.lastElementChild; k; k = k.previousElementSibling) {
      var s = k.getAttribute("data-seq");
      if (k.classList.contains("fd-pending") || (s !== null && Number(s) > seq)) { before = k; continue; }
      break;
    }
    log.insertBefore(node, before);
    scrollDown();
  }
  function note(text) {
    log.insertBefore(el("div", "fd-note", text), firstPending());
    scrollDown();
  }
  function bubble(role, text) {
    var wrap = el("div", "fd-msg fd-" + role);
    if (role === "customer") wrap.style.background = opts.color;
    if (role === "agent") wrap.appendChild(el("div", "fd-who", "Support agent"));
    wrap.appendChild(document.createTextNode(text));
    return wrap;
  }
  function clearButtons() {
    if (buttonsBox) buttonsBox.remove();
    buttonsBox = null;
  }
  function addButtons(buttons, seq) {
    clearButtons();
    var box = el("div", "fd-buttons");
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", "Suggested replies");
    buttons.forEach(function (b) {
      var text = String(b.payload || b.title || "");
      var btn = el("button", "", String(b.title || b.payload || ""));
      btn.type = "button";
      btn.style.borderColor = opts.color;
      btn.style.color = opts.color;
      btn.addEventListener("click", function () { submit(text); input.focus(); });
      box.appendChild(btn);
    });
    buttonsBox = box;
    buttonsSeq = seq;
    place(box, seq);
  }
  function showTyping(role) {
    typing.textContent = role === "agent" ? "Support agent is typing…" : "Assistant is typing…";
    clearTimeout(typingTimer);
    // the frame is not stored: if its message never comes (a person took over), stop
    typingTimer = setTimeout(hideTyping, TYPING_MS);
  }
  function hideTyping() { clearTimeout(typingTimer); typing.textContent = ""; }

  var STATUS_TEXT = {
    waiting: "Waiting for a member of our team…",
    agent: "An agent joined the conversation.",
    bot: "You are chatting with our assistant again.",
    closed: "This conversation was closed.",
  };

  // --- frames from the server ------------------------------------------------------------
  function seen(seq) {
    if (shown[seq]) return true;
    shown[seq] = true;
    if (seq > lastSeq) lastSeq = seq;
    return false;
  }
  function pendingIndex(clientId) {
    for (var i = 0; i < state.pending.length; i++) if (state.pending[i].client_id === clientId) return i;
    return -1;
  }
  function confirm(clientId, seq) {
    // a message this page sent is stored: it leaves the outbox and takes its place in the log
    var i = pendingIndex(clientId);
    if (i < 0) return false;
    state.pending.splice(i, 1);
    save();
    var node = log.querySelector('.fd-pending[data-client-id="' + CSS.escape(clientId) + '"]');
    if (node) { node.classList.remove("fd-pending"); place(node, seq); }
    return true;
  }
  function refuse(f) {
    // an error naming a message in the outbox: the server will not store it (too long,
    // say), so it leaves the outbox, marked as not sent with the reason, neither resent
    // nor mistaken for sent
    var i = f.client_id ? pendingIndex(f.client_id) : -1;
    if (i < 0) return false;
    var p = state.pending.splice(i, 1)[0];
    save();
    var why = p.text.length > input.maxLength
      ? "Not sent: messages can be at most " + input.maxLength + " characters. Please shorten it and send it again."
      : "Not sent: " + String(f.message);
    var node = log.querySelector('.fd-pending[data-client-id="' + CSS.escape(p.client_id) + '"]');
    if (node) {
      node.classList.remove("fd-pending");
      node.classList.add("fd-failed");
      node.appendChild(el("span", "fd-hidden", " (not sent)")); // the strike-through, in words
      // the log is a polite live region: the reason is announced once, as it is added
      var reason = el("div", "fd-failed-why", why);
      reason.id = "fd-why-" + (counter++);
      node.setAttribute("aria-describedby", reason.id);
      node.parentNode.insertBefore(reason, node.nextSibling);
      scrollDown();
    }
    if (!input.value) input.value = p.text; // back in the input, to shorten and send again
    return true;
  }
  function onWelcome(f) {
    if (typeof f.max_text_chars === "number" && f.max_text_chars > 0) input.maxLength = f.max_text_chars;
    if (f.conversation_id !== shownConversation) {
      if (shownConversation) note("A new conversation started.");
      shown = {};
      lastSeq = 0;
      shownConversation = f.conversation_id;
    }
    state.conversation_id = f.conversation_id;
    state.token = f.token;
    save();
    backoff = BACKOFF_MIN; // a welcome, not an open socket, means the server is back
    conn.textContent = "online";
    // resent messages are stored once: the server acks a repeated client_id with its old seq
    state.pending.forEach(function (p) { transmit(p); });
  }
  function onEvent(f) {
    if (typeof f.seq !== "number" || seen(f.seq)) return; // a replay overlap, or a duplicate
    if (buttonsBox && f.seq > buttonsSeq) clearButtons();
    if (f.type === "status") {
      hideTyping();
      var line = el("div", "fd-note", STATUS_TEXT[f.status] || String(f.status));
      place(line, f.seq);
      if (f.status === "closed") { forget(); fresh = true; askRating(); }
      return;
    }
    var role = f.role === "customer" || f.role === "agent" ? f.role : "bot";
    if (role !== "customer") hideTyping();
    if (role === "customer" && f.client_id && confirm(f.client_id, f.seq)) return;
    place(bubble(role, String(f.text == null ? "" : f.text)), f.seq);
    if (f.buttons && f.buttons.length && f.seq === lastSeq) addButtons(f.buttons, f.seq);
  }
  // After a close: 1-5 stars, sent on this connection (still the closed conversation's).
  function askRating() {
    var box = el("div", "fd-rate");
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", "Rate this conversation");
    box.appendChild(el("span", "fd-rate-q", "How did we do?"));
    var sock = ws;
    [1, 2, 3, 4, 5].forEach(function (n) {
      var star = el("button", null, "\u2605");
      star.type = "button";
      star.setAttribute("aria-label", n + (n === 1 ? " star" : " stars"));
      star.addEventListener("click", function () {
        if (sock && sock.readyState === WebSocket.OPEN) {
          sock.send(JSON.stringify({ type: "rate", stars: n }));
        }
        box.textContent = "Thanks for your rating!";
      });
      box.appendChild(star);
    });
    log.appendChild(box);
    scrollDown();
  }
  function onFrame(f) {
    if (f.type === "welcome") onWelcome(f);
    else if (f.type === "ack") { seen(f.seq); confirm(f.client_id, f.seq); }
    else if (f.type === "message" || f.type === "status") onEvent(f);
    else if (f.type === "typing") showTyping(f.role);
    else if (f.type === "error") {
      if (f.code === "conversation_closed") { forget(); restart(); }
      else if (!refuse(f)) note("⚠ " + String(f.message));
    }
  }

  // --- the connection --------------------------------------------------------------------
  function connect() {
    retryTimer = null;
    conn.textContent = "connecting…";
    var sock = new WebSocket(wsUrl);
    ws = sock;
    sock.onopen = function () {
      var hello = { type: "hello", last_seq: lastSeq };
      if (state.conversation_id) { hello.conversation_id = state.conversation_id; hello.token = state.token; }
      if (hello.conversation_id !== shownConversation) hello.last_seq = 0;
      sock.send(JSON.stringify(hello));
    };
    sock.onmessage = function (m) {
      var f;
      try { f = JSON.parse(m.data); } catch (e) { return; }
      if (f && typeof f === "object") onFrame(f);
    };
    sock.onclose = function (e) {
      if (ws !== sock) return;
      ws = null;
      hideTyping();
      if (e.code === 4401) forget(); // the server does not know this conversation: start anew
      conn.textContent = "offline, reconnecting…";
      // exponential backoff with jitter (many widgets must not return all at once), capped
      var delay = backoff / 2 + Math.random() * backoff / 2;
      backoff = Math.min(backoff * 2, BACKOFF_MAX);
      retryTimer = setTimeout(connect, delay);
    };
  }
  function restart() {
    // a new conversation on a new socket (the old one was closed by the support team)
    fresh = false;
    var old = ws;
    ws = null;
    if (old) { old.onclose = null; old.onmessage = null; old.close(1000); }
    clearTimeout(retryTimer);
    connect();
  }
  window.addEventListener("online", function () {
    if (retryTimer) { clearTimeout(retryTimer); connect(); }
  });

  function transmit(p) {
    if (ws && ws.readyState === 1 && state.conversation_id) {
      ws.send(JSON.stringify({ type: "message", client_id: p.client_id, text: p.text }));
    }
  }
  function showPending(p) {
    var node = bubble("customer", p.text);
    node.classList.add("fd-pending");
    node.setAttribute("data-client-id", p.client_id);
    log.appendChild(node);
    scrollDown();
  }
  function submit(text) {
    text = (text || "").trim();
    if (!text) return;
    clearButtons();
    var p = {
      client_id: Date.now().toString(36) + "-" + (counter++) + "-" + Math.random().toString(36).slice(2, 10),
      text: text,
    };
    state.pending.push(p);
    save();
    showPending(p);
    if (fresh) restart(); // sent after the new conversation's welcome
    else transmit(p);     // otherwise (offline) after the next welcome
  }
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    submit(input.value);
    input.value = "";
  });
  // tell the agent handling the conversation that the customer is typing (at most every 2 s)
  var typedAt = 0;
  input.addEventListener("input", function () {
    var now = Date.now();
    if (now - typedAt < 2000 || !input.value) return;
    if (ws && ws.readyState === 1 && state.conversation_id) {
      typedAt = now;
      ws.send(JSON.stringify({ type: "typing" }));
    }
  });

  // the greeting is the widget's own: shown first, never stored
  log.appendChild(bubble("bot", opts.greeting));
  state.pending.forEach(showPending); // typed before a reload, not yet stored
  connect();

  function mount() {
    (document.head || document.documentElement).appendChild(css);
    document.body.appendChild(launch);
    document.body.appendChild(panel);
    if (opts.open) toggle(true, false); // open, but do not take the page's focus on load
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);

  window.Frontdesk = {
    open: function () { toggle(true); },
    close: function () { toggle(false); },
  };
})();
