/* Frontdesk agent console (docs/console.md). Plain script, no dependencies.
   Everything a customer (or anyone) wrote is rendered with textContent, never as HTML. */
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var me = null, csrf = "", ws = null, backoff = 500, retryTimer = null;
  var openId = null, openStatus = null, shown = {}, lastSeq = 0;
  var queue = [], mine = [], clockSkew = 0, typingSent = 0, typingTimer = null;
  var tagSeq = null, pickedSource = null, statsTimer = null, toTagTimer = null;
  var REASONS = {
    requested: "asked for a person", low_confidence: "bot unsure", rule: "rule",
    action_failed: "action failed", frustration: "frustrated", out_of_scope: "out of scope",
  };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function short(id) { return id.slice(0, 8); }
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    seconds = Math.max(0, Math.round(seconds));
    var m = Math.floor(seconds / 60), s = seconds % 60;
    if (m >= 60) return Math.floor(m / 60) + "h " + (m % 60) + "m";
    return m + ":" + (s < 10 ? "0" : "") + s;
  }

  // --- HTTP -------------------------------------------------------------------------------
  function api(method, path, body) {
    var init = { method: method, credentials: "same-origin", headers: {} };
    if (method !== "GET") init.headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (r) {
      if (r.status === 401 && path !== "/console/login") { showLogin(); }
      if (r.status === 204) return {};
      return r.json().then(function (data) {
        if (!r.ok) {
          var err = new Error(data.detail || ("HTTP " + r.status));
          err.status = r.status;
          throw err;
        }
        return data;
      });
    });
  }
  function fail(err) { $("chat-error").textContent = err.message || String(err); }

  // --- login ------------------------------------------------------------------------------
  function showLogin() {
    me = null;
    if (ws) { ws.onclose = null; ws.close(); ws = null; }
    clearTimeout(retryTimer);
    clearInterval(statsTimer);
    clearInterval(toTagTimer);
    $("desk-view").hidden = true;
    $("login-view").hidden = false;
    $("logout").hidden = true;
    $("who").textContent = "";
    $("conn").textContent = "";
    $("email").focus();
  }
  $("login-form").addEventListener("submit", function (e) {
    e.preventDefault();
    $("login-error").textContent = "";
    api("POST", "/console/login", { email: $("email").value, password: $("password").value })
      .then(function (data) { $("password").value = ""; start(data); })
      .catch(function (err) { $("login-error").textContent = err.message; });
  });
  $("logout").addEventListener("click", function () {
    api("POST", "/console/logout").then(showLogin, showLogin);
  });

  function start(data) {
    me = data.agent;
    csrf = data.csrf_token;
    $("login-view").hidden = true;
    $("desk-view").hidden = false;
    $("logout").hidden = false;
    $("who").textContent = me.name + " (" + me.role + ")";
    connect();
    api("GET", "/console/api/canned").then(renderCanned, fail);
    api("GET", "/console/api/intents").then(function (data) {
      var list = $("intents");
      clear(list);
      data.intents.forEach(function (i) { var o = el("option"); o.value = i.name; list.appendChild(o); });
    }, fail);
    if (me.role === "admin") {
      $("totag-panel").hidden = false;
      loadToTag();
      clearInterval(toTagTimer);
      toTagTimer = setInterval(loadToTag, 15000);
      $("admin").hidden = false;
      loadStats();
      statsTimer = setInterval(loadStats, 5000);
    }
  }

  // --- the agent websocket ------------------------------------------------------------------
  function connect() {
    var url = new URL("/ws/console", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    var sock = new WebSocket(url.href);
    ws = sock;
    $("conn").textContent = "connecting…";
    sock.onopen = function () {
      backoff = 500;
      $("conn").textContent = "live";
      if (openId) watch(openId);
    };
    sock.onmessage = function (m) {
      var f;
      try { f = JSON.parse(m.data); } catch (e) { return; }
      onFrame(f);
    };
    sock.onclose = function (e) {
      if (ws !== sock) return;
      ws = null;
      if (e.code === 4401) { showLogin(); return; }
      $("conn").textContent = "reconnecting…";
      retryTimer = setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }
  function watch(id) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "watch", conversation_id: id, last_seq: lastSeq }));
    }
  }
  function onFrame(f) {
    if (f.type === "queue") {
      queue = f.waiting; mine = f.mine;
      clockSkew = Date.parse(f.now) - Date.now();
      renderQueue();
      if (me && me.role === "admin") loadStats();
    } else if (f.conversation_id && f.conversation_id === openId) {
      if (f.type === "message" || f.type === "status") addEvent(f);
      else if (f.type === "typing") showTyping(f.role);
    } else if (f.type === "error") {
      fail(new Error(f.message));
    }
  }

  // --- queue and my conversations -----------------------------------------------------------
  function renderQueue() {
    var list = $("queue");
    clear(list);
    $("queue-count").textContent = String(queue.length);
    $("queue-empty").hidden = queue.length > 0;
    queue.forEach(function (q) {
      var li = el("li", "item" + (q.conversation_id === openId ? " open" : ""));
      li.dataset.id = q.conversation_id;
      var top = el("div", "line");
      top.appendChild(el("strong", null, "#" + short(q.conversation_id)));
      top.appendChild(el("span", "reason", REASONS[q.reason] || q.reason || "escalated"));
      var wait = el("span", "wait");
      wait.dataset.since = q.waiting_since;
      top.appendChild(wait);
      li.appendChild(top);
      li.appendChild(el("div", "text", q.last_customer_text || ""));
      var take = el("button", "primary", "Take");
      take.type = "button";
      take.setAttribute("aria-label", "Take conversation " + short(q.conversation_id));
      take.addEventListener("click", function (e) { e.stopPropagation(); takeIt(q.conversation_id); });
      li.appendChild(take);
      li.addEventListener("click", function () { open(q.conversation_id); });
      list.appendChild(li);
    });
    tick();
    var mineList = $("mine");
    clear(mineList);
    $("mine-empty").hidden = mine.length > 0;
    mine.forEach(function (c) {
      var li = el("li", "item" + (c.conversation_id === openId ? " open" : ""));
      var line = el("div", "line");
      line.appendChild(el("strong", null, "#" + short(c.conversation_id)));
      line.appendChild(el("span", "text", c.channel));
      li.appendChild(line);
      li.addEventListener("click", function () { open(c.conversation_id); });
      mineList.appendChild(li);
    });
  }
  function tick() {
    var now = Date.now() + clockSkew;
    var nodes = document.querySelectorAll(".wait[data-since]");
    for (var i = 0; i < nodes.length; i++) {
      nodes[i].textContent = "waiting " + duration((now - Date.parse(nodes[i].dataset.since)) / 1000);
    }
  }
  setInterval(tick, 1000);

  function takeIt(id) {
    $("chat-error").textContent = "";
    api("POST", "/console/api/conversations/" + id + "/take")
      .then(function () { open(id); })
      .catch(fail);
  }

  // --- the open conversation ------------------------------------------------------------------
  function open(id) {
    $("chat-error").textContent = "";
    openId = id; shown = {}; lastSeq = 0; tagSeq = null;
    clear($("log"));
    clear($("suggestions"));
    hideTyping();
    setTagTarget(null);
    $("chat-title").textContent = "Conversation #" + short(id);
    renderQueue();
    // one column (a phone): the conversation is below the queue, bring it into view
    if (window.matchMedia("(max-width: 1000px)").matches) {
      document.querySelector(".chat").scrollIntoView({ block: "start" });
    }
    api("GET", "/console/api/conversations/" + id).then(function (h) {
      if (openId !== id) return;
      h.events.forEach(function (e) {
        addEvent({ type: e.kind, seq: e.seq, role: e.role, text: e.text,
                   status: e.payload.status, reason: e.payload.reason });
      });
      h.tags.forEach(function (t) { markTagged(t.seq, t.intent); });
      setStatus(h.status);
      watch(id);
      loadSuggestions();
    }, fail);
  }
  function setStatus(status) {
    openStatus = status;
    var badge = $("chat-status");
    badge.textContent = status;
    badge.className = "badge " + status;
    var handling = status === "agent";
    $("reply").disabled = !handling;
    $("send").disabled = !handling;
    $("hand-back").disabled = !(handling || status === "waiting");
    $("close").disabled = !(handling || status === "waiting");
    if (!suggesting()) clear($("suggestions")); // nothing to send them to
  }
  var STATUS_NOTE = {
    waiting: "Waiting in the queue", agent: "An agent took the conversation",
    bot: "Handed back to the bot", closed: "Closed",
  };
  function addEvent(f) {
    if (typeof f.seq !== "number" || shown[f.seq]) return;
    shown[f.seq] = true;
    lastSeq = Math.max(lastSeq, f.seq);
    var node;
    if (f.type === "status") {
      var reason = f.reason && f.status === "waiting" ? " (" + (REASONS[f.reason] || f.reason) + ")" : "";
      node = el("div", "note", "— " + (STATUS_NOTE[f.status] || f.status) + reason + " —");
      setStatus(f.status);
    } else {
      node = el("div", "msg " + f.role);
      var who = el("div", "who");
      who.appendChild(el("span", null, { customer: "Customer", bot: "Bot", agent: "Agent" }[f.role] || f.role));
      if (f.role === "customer") {
        var tag = el("button", "tagbtn", "Tag");
        tag.type = "button";
        tag.setAttribute("aria-label", "Tag the intent of message " + f.seq);
        tag.addEventListener("click", function () { setTagTarget(f.seq, f.text); });
        who.appendChild(tag);
        hideTyping();
      }
      node.appendChild(who);
      node.appendChild(el("div", "body", f.text));
      if (f.role === "customer" && Object.keys(shown).length > 1) loadSuggestionsSoon();
    }
    node.dataset.seq = String(f.seq);
    var log = $("log"), after = null;
    for (var c = log.lastElementChild; c; c = c.previousElementSibling) {
      if (Number(c.dataset.seq) < f.seq) break;
      after = c;
    }
    log.insertBefore(node, after);
    log.scrollTop = log.scrollHeight;
  }
  function showTyping(role) {
    if (role !== "customer") return;
    $("typing").textContent = "Customer is typing…";
    clearTimeout(typingTimer);
    typingTimer = setTimeout(hideTyping, 4000);
  }
  function hideTyping() { clearTimeout(typingTimer); $("typing").textContent = ""; }

  // --- replying -----------------------------------------------------------------------------
  function send() {
    var text = $("reply").value.trim();
    if (!text || !openId) return;
    var source = pickedSource;
    api("POST", "/console/api/conversations/" + openId + "/messages",
        source ? { text: text, source: source } : { text: text })
      .then(function () { $("reply").value = ""; pickedSource = null; $("chat-error").textContent = ""; })
      .catch(fail);
  }
  $("reply-form").addEventListener("submit", function (e) { e.preventDefault(); send(); });
  $("reply").addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); }
  });
  $("reply").addEventListener("input", function () {
    var now = Date.now();
    if (openId && openStatus === "agent" && now - typingSent > 2000 && ws && ws.readyState === WebSocket.OPEN) {
      typingSent = now;
      ws.send(JSON.stringify({ type: "typing", conversation_id: openId }));
    }
  });
  function use(text, source) {
    var box = $("reply");
    box.value = text;
    pickedSource = source;
    box.focus();
  }
  $("hand-back").addEventListener("click", function () {
    api("POST", "/console/api/conversations/" + openId + "/hand-back").catch(fail);
  });
  $("close").addEventListener("click", function () {
    api("POST", "/console/api/conversations/" + openId + "/close").catch(fail);
  });

  // --- agent assist and canned responses ------------------------------------------------------
  var suggestTimer = null;
  function suggesting() { return openStatus !== "closed" && openStatus !== "bot"; }
  function loadSuggestionsSoon() { clearTimeout(suggestTimer); suggestTimer = setTimeout(loadSuggestions, 300); }
  function loadSuggestions() {
    var id = openId, list = $("suggestions");
    if (!id || !suggesting()) return;
    api("GET", "/console/api/conversations/" + id + "/suggestions").then(function (data) {
      if (openId !== id || !suggesting()) return;
      clear(list);
      if (!data.suggestions.length) list.appendChild(el("li", "empty", "No suggestions."));
      data.suggestions.forEach(function (s) {
        var li = el("li"), b = el("button");
        b.type = "button";
        b.className = "suggestion";
        b.appendChild(el("span", null, s.text));
        var meta = s.source === "intent" ? "intent " + s.intent : "from past chats";
        b.appendChild(el("span", "meta", meta + " · " + Math.round(s.score * 100) + "%"));
        b.addEventListener("click", function () { use(s.text, s.source); });
        li.appendChild(b);
        list.appendChild(li);
      });
    }, fail);
  }
  function renderCanned(data) {
    var list = $("canned");
    clear(list);
    if (!data.canned.length) list.appendChild(el("li", "empty", "None configured (canned.yml)."));
    data.canned.forEach(function (c) {
      var li = el("li"), b = el("button");
      b.type = "button";
      b.appendChild(el("strong", null, c.title));
      b.appendChild(el("span", "meta", c.text));
      b.addEventListener("click", function () { use(c.text, "canned"); });
      li.appendChild(b);
      list.appendChild(li);
    });
  }

  // --- tagging ------------------------------------------------------------------------------
  function setTagTarget(seq, text) {
    tagSeq = seq;
    $("tag-intent").disabled = seq === null;
    $("tag-save").disabled = seq === null;
    $("tag-target").textContent = seq === null ? "Click “Tag” on a customer message."
      : "Message " + seq + ": “" + text + "”";
    if (seq !== null) $("tag-intent").focus();
  }
  function markTagged(seq, intent) {
    var node = $("log").querySelector('[data-seq="' + seq + '"] .who');
    if (!node) return;
    var old = node.querySelector(".tagged");
    if (old) old.remove();
    node.appendChild(el("span", "tagged", "tagged: " + intent));
  }
  $("tag-form").addEventListener("submit", function (e) {
    e.preventDefault();
    if (tagSeq === null || !openId) return;
    var seq = tagSeq, intent = $("tag-intent").value.trim();
    api("POST", "/console/api/conversations/" + openId + "/tags", { seq: seq, intent: intent })
      .then(function () { markTagged(seq, intent); $("tag-intent").value = ""; setTagTarget(null); })
      .catch(fail);
  });

  // --- to tag: messages the bot was unsure of (active learning) -------------------------------
  function loadToTag() {
    api("GET", "/console/api/to-tag").then(function (data) {
      var list = $("totag");
      clear(list);
      $("totag-count").textContent = data.messages.length;
      $("totag-empty").hidden = data.messages.length > 0;
      data.messages.forEach(function (m) {
        var li = el("li", "item totag");
        var head = el("div", "line");
        head.appendChild(el("span", "text", m.text));
        head.appendChild(el("span", "reason", m.why === "clarify" ? "asked back" : "handed over"));
        li.appendChild(head);
        var form = el("form", "line");
        var input = el("input");
        input.setAttribute("list", "intents");
        input.setAttribute("aria-label", "Intent of: " + m.text);
        input.placeholder = "intent";
        input.pattern = "[A-Za-z0-9_.\\-]{1,100}";
        input.required = true;
        var save = el("button", null, "Tag");
        save.type = "submit";
        form.appendChild(input);
        form.appendChild(save);
        form.addEventListener("submit", function (e) {
          e.preventDefault();
          api("POST", "/console/api/conversations/" + m.conversation_id + "/tags",
              { seq: m.seq, intent: input.value.trim() })
            .then(function () { li.remove(); loadToTag(); }, fail);
        });
        li.appendChild(form);
        list.appendChild(li);
      });
    }, function () { /* the next poll retries */ });
  }

  // --- admin numbers --------------------------------------------------------------------------
  function loadStats() {
    api("GET", "/console/api/stats").then(function (n) {
      var dl = $("numbers");
      clear(dl);
      function row(label, value) { dl.appendChild(el("dt", null, label)); dl.appendChild(el("dd", null, value)); }
      row("In the queue", n.queue_length);
      row("Taken (24 h)", n.taken);
      row("Average wait", duration(n.average_wait_s));
      row("Average handle time", duration(n.average_handle_s));
      row("Rating", n.average_rating === null ? "–" : n.average_rating.toFixed(1) + " (" + n.ratings + ")");
      Object.keys(n.escalations).forEach(function (r) { row("Escalated: " + (REASONS[r] || r), n.escalations[r]); });
    }, function () { /* the next poll retries */ });
  }

  // --- boot -----------------------------------------------------------------------------------
  fetch("/console/api/me", { credentials: "same-origin" }).then(function (r) {
    if (!r.ok) { showLogin(); return; }
    return r.json().then(start);
  }, showLogin);
})();
