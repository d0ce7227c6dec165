/* 数字吹哨 · the grid worker's page (/m/).
 *
 * Signs in with the session cookie (POST /api/v1/session), lists the worker's open tickets most urgent first,
 * opens a ticket (what, where, the evidence in words, the household's contacts on request), and moves it
 * along: 接单, 到场 (with the phone's position when it gives one), 办结, 备注. Actions tapped while offline wait
 * in IndexedDB and go out, in order, when the network is back. Notifications come over the live socket; the
 * page confirms each one it has shown while visible (delivered means seen: until then a fire counts as not
 * seen and goes on to SMS). A one-tap link (/m/a/<token>) shows its one ticket and acknowledges it, nothing else.
 * Nothing is loaded from the internet.
 */
(function () {
  "use strict";

  var SEV = { critical: "紧急", major: "重要", minor: "一般", warning: "提示" };
  var STATUS = { dispatched: "待接单", acknowledged: "已接单", on_site: "已到场", resolved: "已办结", closed: "已关闭" };
  var ACTION = {
    dispatched: "派单", notify: "通知", escalated: "升级通知", ack: "接单", arrive: "到场", resolve: "办结",
    close: "关闭", comment: "备注", reassign: "改派", transfer: "转派", seen: "已查看通知", unseen: "通知未被查看，改用下一渠道",
    alarm_grouped: "合并告警", alarm_cleared: "告警清除", severity_raised: "级别提升"
  };
  var OUTCOME = { confirmed: "确认属实", false_alarm: "误报", duplicate: "重复" };
  var VERB = { ack: "接单", arrive: "到场", resolve: "办结", comment: "备注" };
  var DB_NAME = "whistle-worker", STORE = "outbox";

  var me = null, skew = 0, tickets = [], current = null, ws = null, wsBackoff = 1000, pollTimer = null;
  var notes = {}, shownUnconfirmed = {}, flushing = false, reloadTimer = null;
  var listAsked = 0, ticketAsked = 0;  // answers that come back out of order must not undo newer ones

  function $(id) { return document.getElementById(id); }
  function show(section) {
    ["signin", "list", "detail", "onetap", "problem"].forEach(function (s) { $(s).hidden = s !== section; });
    document.body.setAttribute("data-state", section);
  }
  function text(el, value) { el.textContent = value == null ? "" : String(value); return el; }
  function make(tag, cls, value) { var e = document.createElement(tag); if (cls) e.className = cls; if (value != null) text(e, value); return e; }
  function now() { return Date.now() + skew; }
  function ms(iso) { return iso ? new Date(iso).getTime() : null; }
  function ago(iso) {
    var s = Math.max(0, Math.round((now() - ms(iso)) / 1000));
    if (s < 60) return "刚刚";
    if (s < 3600) return Math.floor(s / 60) + "分钟前";
    if (s < 86400) return Math.floor(s / 3600) + "小时" + (Math.floor(s / 60) % 60 ? Math.floor(s / 60) % 60 + "分钟" : "") + "前";
    return Math.floor(s / 86400) + "天前";
  }
  function clock(iso) {
    var d = new Date(ms(iso) + 8 * 3600 * 1000);  // Beijing time, whatever the phone's zone
    function p(n) { return (n < 10 ? "0" : "") + n; }
    return p(d.getUTCMonth() + 1) + "-" + p(d.getUTCDate()) + " " + p(d.getUTCHours()) + ":" + p(d.getUTCMinutes());
  }
  var flashTimer = null;
  function flash(message, alarm) {
    var f = $("flash");
    text(f, message); f.className = "flash" + (alarm ? " alarm" : ""); f.hidden = false;
    clearTimeout(flashTimer);
    flashTimer = setTimeout(function () { f.hidden = true; }, alarm ? 8000 : 3500);
  }

  // ---------- the API (same origin, the session cookie) ----------
  function Offline() { this.offline = true; }
  function api(method, path, body) {
    var init = { method: method, credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" } };
    if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    return fetch(path, init).then(function (r) {
      return r.text().then(function (t) {
        var data = null;
        try { data = t ? JSON.parse(t) : null; } catch (e) { data = null; }
        return { status: r.status, ok: r.ok, data: data };
      });
    }, function () { throw new Offline(); });
  }

  // ---------- the offline queue (IndexedDB; the service worker reads the same store) ----------
  function idb() {
    return new Promise(function (resolve, reject) {
      var open = indexedDB.open(DB_NAME, 1);
      open.onupgradeneeded = function () { open.result.createObjectStore(STORE, { keyPath: "n", autoIncrement: true }); };
      open.onsuccess = function () { resolve(open.result); };
      open.onerror = function () { reject(open.error); };
    });
  }
  function store(mode, fn) {
    return idb().then(function (db) {
      return new Promise(function (resolve, reject) {
        var tx = db.transaction(STORE, mode), out = fn(tx.objectStore(STORE));
        tx.oncomplete = function () { db.close(); resolve(out && out.result !== undefined ? out.result : out); };
        tx.onerror = function () { db.close(); reject(tx.error); };
      });
    });
  }
  function queued() { return store("readonly", function (s) { return s.getAll(); }); }
  function enqueue(item) {
    return store("readwrite", function (s) { return s.add(item); }).then(function () {
      if (navigator.serviceWorker && navigator.serviceWorker.ready) {
        navigator.serviceWorker.ready.then(function (reg) { if (reg.sync) return reg.sync.register("whistle-outbox"); }).catch(function () {});
      }
      return showQueue();
    });
  }
  function dequeue(n) { return store("readwrite", function (s) { return s.delete(n); }); }
  function showQueue(note) {
    return queued().then(function (items) {
      var q = $("queue"), mine = items.filter(function (i) { return !me || i.user_id === me.id; });
      q.setAttribute("data-pending", String(mine.length));
      if (mine.length) {
        text(q, (navigator.onLine ? "正在发送" : "离线") + "：" + mine.length + " 项操作待发送（" +
          mine.map(function (i) { return VERB[i.verb] || i.verb; }).join("、") + "）");
        q.className = "queue"; q.hidden = false;
      } else if (note) {
        text(q, note); q.className = "queue sent"; q.hidden = false;
        setTimeout(function () { if ($("queue").getAttribute("data-pending") === "0") $("queue").hidden = true; }, 4000);
      } else { q.hidden = true; }
      markPending(mine);
      return mine;
    }).catch(function () { return []; });
  }
  function withLock(fn) {  // the page and the service worker never flush at once
    if (navigator.locks && navigator.locks.request) return navigator.locks.request("whistle-outbox", fn);
    return fn();
  }
  function flush() {
    if (flushing || !me) return Promise.resolve();
    flushing = true;
    var sent = 0;
    return withLock(function () {
      return queued().then(function (items) {
        var mine = items.filter(function (i) { return i.user_id === me.id; });
        function next(k) {
          if (k >= mine.length) return null;
          var item = mine[k];
          return api("POST", "/api/v1/tickets/" + item.ticket_id + "/" + (item.verb === "comment" ? "comments" : item.verb), item.body)
            .then(function (r) {
              if (r.status === 401) { throw new Offline(); }  // signed out meanwhile: keep it for after sign-in
              if (r.status >= 500 || r.status === 429) { throw new Offline(); }
              if (!r.ok && r.status !== 409 && r.status !== 404) flash("「" + VERB[item.verb] + "」未能提交：" + detail(r));
              sent += 1;
              return dequeue(item.n).then(function () { return next(k + 1); });
            });
        }
        return next(0);
      });
    }).catch(function () { return null; }).then(function () {
      flushing = false;
      return showQueue(sent ? "离线操作已发送（" + sent + " 项）" : null).then(function () {
        if (sent) { loadTickets(); if (current) openTicket(current.ticket.id); }
      });
    });
  }
  function detail(r) { return (r.data && (r.data.detail && (r.data.detail.msg || r.data.detail))) || ("HTTP " + r.status); }

  // ---------- signing in ----------
  var mode = "password";
  function setTab(t) {
    mode = t;
    document.querySelectorAll(".tab").forEach(function (b) { b.classList.toggle("on", b.getAttribute("data-tab") === t); });
    document.querySelectorAll("#signin .pw").forEach(function (e) { e.hidden = t !== "password"; });
    document.querySelectorAll("#signin .tk").forEach(function (e) { e.hidden = t !== "token"; });
  }
  function signIn(ev) {
    ev.preventDefault();
    var body = mode === "token" ? { token: $("si-token").value.trim() } : { user: $("si-user").value.trim(), password: $("si-password").value };
    text($("si-error"), "");
    $("si-submit").disabled = true;
    api("POST", "/api/v1/session", body).then(function (r) {
      $("si-submit").disabled = false;
      if (!r.ok) { text($("si-error"), r.status === 429 ? "尝试次数过多，请稍后再试" : "工号、密码或令牌不正确"); return; }
      $("si-password").value = ""; $("si-token").value = "";
      start(r.data);
    }, function () { $("si-submit").disabled = false; text($("si-error"), "网络不可用，请稍后再试"); });
  }
  function signOut() {
    api("DELETE", "/api/v1/session").then(function () { location.replace("/m/"); }, function () { location.replace("/m/"); });
  }

  // ---------- my tickets ----------
  function loadTickets() {
    var asked = ++listAsked;
    return api("GET", "/api/v1/me/tickets").then(function (r) {
      if (asked !== listAsked) return;  // a newer list is on its way
      if (r.status === 401) { return needSignIn(); }
      if (!r.ok) return;
      skew = ms(r.data.now) - Date.now();
      tickets = r.data.items;
      renderTickets();
    }, function () { /* offline: keep what is shown */ });
  }
  function renderTickets() {
    var ul = $("tickets");
    ul.textContent = "";
    tickets.forEach(function (w) {
      var t = w.ticket, li = make("li", "ticket");
      li.setAttribute("data-id", t.id); li.setAttribute("data-status", t.status); li.setAttribute("data-severity", t.severity);
      var row = make("div", "row");
      row.appendChild(make("span", "sev " + t.severity, w.severity_label));
      row.appendChild(make("span", "kind", w.kind_label));
      row.appendChild(make("span", "status " + t.status, STATUS[t.status] || t.status));
      li.appendChild(row);
      li.appendChild(make("div", "place", [w.place.address, w.place.unit].filter(Boolean).join(" ") || "（无地址）"));
      var sub = make("div", "sub");
      sub.appendChild(make("span", "age", ago(t.created_at)));
      if (w.place.grid_name) sub.appendChild(document.createTextNode(" · " + w.place.grid_name));
      li.appendChild(sub);
      li.addEventListener("click", function () { location.hash = "#/t/" + t.id; });
      ul.appendChild(li);
    });
    var n = tickets.length;
    text($("count"), n); $("count").classList.toggle("zero", !n);
    $("empty").hidden = n > 0;
    showQueue();
  }
  function markPending(items) {
    document.querySelectorAll(".pending-tag").forEach(function (e) { e.remove(); });
    items.forEach(function (i) {
      var li = document.querySelector('.ticket[data-id="' + i.ticket_id + '"] .row');
      if (li) li.appendChild(make("span", "pending-tag", "待发送：" + (VERB[i.verb] || i.verb)));
    });
  }

  // ---------- one ticket ----------
  function openTicket(id) {
    var asked = ++ticketAsked;
    function stale() { return asked !== ticketAsked || location.hash !== "#/t/" + id; }  // moved on meanwhile
    return api("GET", "/api/v1/tickets/" + id + "/detail").then(function (r) {
      if (stale()) return;
      if (r.status === 401) return needSignIn();
      if (r.status === 404) { flash("工单不存在或不在您的范围内"); location.hash = "#/"; return; }
      if (!r.ok) return;
      current = r.data;
      renderTicket();
    }, function () {
      if (stale()) return;
      var cached = tickets.filter(function (w) { return w.ticket.id === id; })[0];
      if (cached) { current = cached; renderTicket(); } else flash("离线，无法打开工单");
    });
  }
  function renderTicket() {
    var w = current, t = w.ticket;
    show("detail");
    $("detail").setAttribute("data-id", t.id); $("detail").setAttribute("data-status", t.status);
    document.querySelector("#detail .card.head").className = "card head " + t.severity;
    text($("d-sev"), w.severity_label).className = "sev " + t.severity;
    text($("d-kind"), w.kind_label);
    text($("d-status"), STATUS[t.status] || t.status).className = "status " + t.status;
    text($("d-age"), "派单于 " + clock(t.created_at) + "（" + ago(t.created_at) + "）");
    text($("d-code"), t.code ? "短信回复 " + t.code + " 可接单" : "");
    var p = w.place;
    text($("d-address"), p.address || "（无地址）");
    var where = [];
    if (p.unit) where.push(p.unit + " 室");
    if (p.floors) where.push("楼高 " + p.floors + " 层");
    if (p.grid_name) where.push(p.grid_name);
    if (p.lone_elder) where.push("独居老人户");
    text($("d-unit"), where.join(" · "));
    var dev = $("d-devices"); dev.textContent = "";
    p.devices.forEach(function (d) { dev.appendChild(make("li", null, (d.location ? d.location + " · " : "") + d.id)); });
    var ev = $("d-evidence"); ev.textContent = "";
    (w.evidence.length ? w.evidence : ["（无详细说明）"]).forEach(function (line) { ev.appendChild(make("li", null, line)); });
    $("d-contacts-card").hidden = !p.has_contacts;
    $("d-contacts").textContent = "";
    var open = t.status === "dispatched" || t.status === "acknowledged" || t.status === "on_site";
    $("btn-ack").hidden = t.status !== "dispatched";
    $("btn-arrive").hidden = !(t.status === "dispatched" || t.status === "acknowledged");
    $("btn-resolve").hidden = !open;
    $("comment-form").hidden = t.status === "closed";
    if (!open) $("resolve-form").hidden = true;
    var h = $("d-history"); h.textContent = "";
    t.history.slice().reverse().forEach(function (e) {
      var li = make("li");
      var who = e.actor === "system" ? "系统" : (me && e.actor === me.id ? "我" : e.actor);
      var line = (ACTION[e.action] || e.action) + " · " + who;
      if (e.action === "resolve" && e.data && e.data.outcome) line += " · " + (OUTCOME[e.data.outcome] || e.data.outcome);
      if (e.action === "arrive" && e.data) line += " · " + arrivalWords(e.data);
      if (e.data && e.data.via === "one_tap") line += " · 一键接单";
      if (e.data && e.data.via === "sms_reply") line += " · 短信回复";
      if (e.data && e.data.queued_at) line += " · 离线提交";
      li.appendChild(make("div", null, line));
      if (e.note) li.appendChild(make("div", "note", e.note));
      li.appendChild(make("div", "when", clock(e.at)));
      h.appendChild(li);
    });
    showQueue();
  }
  function arrivalWords(d) {
    if (!d.position) return "未取得定位";
    if (d.distance_m == null) return "楼栋无坐标";
    var dist = d.distance_m >= 1000 ? (d.distance_m / 1000).toFixed(1) + " 公里" : Math.round(d.distance_m) + " 米";
    return "距楼栋 " + dist + (d.within_radius ? "（" + d.radius_m + " 米内）" : "，超出 " + d.radius_m + " 米");
  }

  function act(verb, body) {
    var t = current.ticket;
    body = body || {};
    var item = { ticket_id: t.id, verb: verb, body: body, user_id: me.id, at: new Date().toISOString() };
    function later() {
      item.body = Object.assign({}, body, { queued_at: item.at });
      return enqueue(item).then(function () { flash("网络不可用：「" + VERB[verb] + "」已保存，联网后自动发送"); return null; });
    }
    if (!navigator.onLine) return later();
    var path = "/api/v1/tickets/" + t.id + "/" + (verb === "comment" ? "comments" : verb);
    return api("POST", path, body).then(function (r) {
      if (r.status === 401) { needSignIn(); return null; }
      if (r.status === 409) { flash("工单状态已变化"); openTicket(t.id); return null; }
      if (!r.ok) { flash("未能提交：" + detail(r)); return null; }
      loadTickets();
      return r.data;
    }, function (e) { if (e && e.offline) return later(); throw e; });
  }
  function onScreen(r) { return r && current && current.ticket.id === r.id && location.hash === "#/t/" + r.id; }
  function ack() {
    act("ack").then(function (r) { if (r) flash("已接单"); if (onScreen(r)) { current.ticket = r; renderTicket(); } });
  }
  function locate() {
    return new Promise(function (resolve) {
      if (!navigator.geolocation) return resolve(null);
      var done = false;
      var timer = setTimeout(function () { if (!done) { done = true; resolve(null); } }, 12000);
      navigator.geolocation.getCurrentPosition(function (pos) {
        if (done) return; done = true; clearTimeout(timer);
        resolve({ lat: pos.coords.latitude, lon: pos.coords.longitude, accuracy_m: pos.coords.accuracy });
      }, function () { if (!done) { done = true; clearTimeout(timer); resolve(null); } },
      { enableHighAccuracy: true, timeout: 10000, maximumAge: 60000 });
    });
  }
  function arrive() {
    $("btn-arrive").disabled = true;
    text($("arrival"), "正在获取定位…"); $("arrival").className = "arrival"; $("arrival").hidden = false;
    locate().then(function (pos) {
      return act("arrive", pos || {}).then(function (r) {
        $("btn-arrive").disabled = false;
        if (!r) { $("arrival").hidden = true; return; }
        var a = r.arrival, words = a && a.located ? arrivalWords({ position: true, distance_m: a.distance_m, within_radius: a.within_radius, radius_m: a.radius_m }) : "未取得定位";
        text($("arrival"), "已到场 · " + words + "，已记录");
        $("arrival").className = "arrival" + (a && a.within_radius === false ? " out" : "");
        $("arrival").setAttribute("data-within", a && a.within_radius != null ? String(a.within_radius) : "unknown");
        if (onScreen(r)) { current.ticket = r; renderTicket(); }
      });
    });
  }
  function resolve(ev) {
    ev.preventDefault();
    var outcome = (document.querySelector('input[name="outcome"]:checked') || {}).value || "confirmed";
    var note = $("resolve-note").value.trim();
    act("resolve", note ? { outcome: outcome, note: note } : { outcome: outcome }).then(function (r) {
      if (r) { flash("已办结"); $("resolve-form").hidden = true; $("resolve-note").value = ""; }
      if (onScreen(r)) { current.ticket = r; renderTicket(); }
    });
  }
  function comment(ev) {
    ev.preventDefault();
    var note = $("comment-note").value.trim();
    if (!note) return;
    act("comment", { note: note }).then(function (r) { $("comment-note").value = ""; if (onScreen(r)) { current.ticket = r; renderTicket(); } });
  }
  function contacts() {
    api("GET", "/api/v1/tickets/" + current.ticket.id + "/contacts").then(function (r) {
      var ul = $("d-contacts"); ul.textContent = "";
      if (!r.ok) { ul.appendChild(make("li", null, r.status === 403 ? "仅工单责任人可查看" : "无法读取")); return; }
      if (!r.data.contacts.length) ul.appendChild(make("li", null, "未登记联系人"));
      r.data.contacts.forEach(function (c) {
        var li = make("li", null, (c.name || "") + (c.relation ? "（" + c.relation + "）" : "") + " ");
        var a = make("a", null, c.phone); a.href = "tel:" + c.phone; li.appendChild(a);
        ul.appendChild(li);
      });
    }, function () { flash("离线，无法读取联系方式"); });
  }

  // ---------- notifications: shown, then confirmed (delivered means seen) ----------
  function addNote(n, fromLive) {
    var known = notes[n.id];
    notes[n.id] = Object.assign({}, known || {}, n);
    if (fromLive && !known) {  // on screen at once, whatever view is open
      flash((SEV[n.severity] || "") + "：" + n.title, n.severity === "critical");
      if (!n.seen_at) shownUnconfirmed[n.id] = true;
    }
    renderNotes();
    confirmShown();
  }
  function renderNotes() {
    var ul = $("notes"), items = Object.keys(notes).map(function (k) { return notes[k]; });
    items.sort(function (a, b) { return ms(b.created_at) - ms(a.created_at); });
    ul.textContent = "";
    var listed = document.body.getAttribute("data-state") === "list";
    items.slice(0, 20).forEach(function (n) {
      if (listed && !n.seen_at) shownUnconfirmed[n.id] = true;  // in the list on screen: shown
      var li = make("li", n.seen_at ? "" : "unseen");
      li.setAttribute("data-id", n.id); li.setAttribute("data-seen", n.seen_at ? "1" : "0");
      li.appendChild(make("div", "t", "【" + (SEV[n.severity] || n.severity) + "】" + n.title));
      var extra = (n.body || "").split("\n").filter(function (line) {  // what the title does not say already
        return line && !/^(紧急|重要|一般|提示)：/.test(line) && !/^地点：/.test(line) && !/^工单：/.test(line);
      });
      if (extra.length) li.appendChild(make("div", "b", extra.join("\n")));
      li.appendChild(make("div", "when", ago(n.created_at)));
      if (n.ticket_id) li.addEventListener("click", function () { location.hash = "#/t/" + n.ticket_id; });
      ul.appendChild(li);
    });
    $("no-notes").hidden = items.length > 0;
  }
  function confirmShown() {
    if (document.visibilityState !== "visible") return;  // a hidden tab has shown nothing to anyone
    var ids = Object.keys(shownUnconfirmed);
    if (!ids.length) return;
    if (ws && ws.readyState === 1) { ws.send(JSON.stringify({ type: "receipt", ids: ids })); return; }
    api("POST", "/api/v1/me/notifications/receipts", { ids: ids, via: "page" }).then(function (r) {
      if (r.ok) confirmed(ids);
    }, function () {});
  }
  function confirmed(ids) {
    ids.forEach(function (id) {
      delete shownUnconfirmed[id];
      if (notes[id] && !notes[id].seen_at) notes[id].seen_at = new Date(now()).toISOString();
    });
    renderNotes();
  }
  function loadNotes() {
    return api("GET", "/api/v1/me/notifications").then(function (r) {
      if (!r.ok) return;
      r.data.items.forEach(function (n) { addNote(n, false); });
    }, function () {});
  }

  // ---------- live ----------
  function setConn(kind) {
    var c = $("conn");
    text(c, { live: "实时", poll: "轮询", off: "离线" }[kind]);
    c.className = "conn " + kind;
  }
  function connect() {
    if (!me || !window.WebSocket) { setConn(navigator.onLine ? "poll" : "off"); return; }
    var proto = location.protocol === "https:" ? "wss://" : "ws://";
    try { ws = new WebSocket(proto + location.host + "/api/v1/live?recipient_id=" + encodeURIComponent(me.id)); }
    catch (e) { ws = null; setConn("poll"); return; }
    ws.onopen = function () { wsBackoff = 1000; setConn("live"); confirmShown(); };
    ws.onmessage = function (m) {
      var doc;
      try { doc = JSON.parse(m.data); } catch (e) { return; }
      if (doc.type === "notification") {
        addNote({ id: doc.id, ticket_id: doc.ticket_id, kind: doc.kind, severity: doc.severity, title: doc.title, body: doc.body,
                  created_at: new Date(doc.created_at).toISOString(), seen_at: null }, true);
        scheduleReload();
      } else if (doc.type === "receipt.ok") {
        confirmed(doc.ids || []);
      } else if (/^(ticket|alarm)\./.test(doc.type || "")) {
        scheduleReload();
      }
    };
    ws.onclose = function () {
      ws = null; setConn(navigator.onLine ? "poll" : "off");
      setTimeout(connect, wsBackoff); wsBackoff = Math.min(wsBackoff * 2, 30000);
    };
  }
  function scheduleReload() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(function () {
      loadTickets();
      if (current && document.body.getAttribute("data-state") === "detail") openTicket(current.ticket.id);
    }, 300);
  }

  // ---------- Web Push ----------
  function b64(s) {
    var pad = "=".repeat((4 - s.length % 4) % 4), raw = atob((s + pad).replace(/-/g, "+").replace(/_/g, "/"));
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }
  function setupPush() {
    if (!("serviceWorker" in navigator) || !("PushManager" in window)) return;
    api("GET", "/api/v1/webpush/key").then(function (r) {
      if (!r.ok || !r.data.public_key) return;
      var key = r.data.public_key, btn = $("push");
      btn.hidden = false;
      navigator.serviceWorker.ready.then(function (reg) { return reg.pushManager.getSubscription(); }).then(function (sub) {
        if (sub) { text(btn, "推送已开启"); btn.disabled = true; }
      }).catch(function () {});
      btn.onclick = function () {
        Notification.requestPermission().then(function (perm) {
          if (perm !== "granted") throw new Error("未允许通知");
          return navigator.serviceWorker.ready;
        }).then(function (reg) {
          return reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: b64(key) });
        }).then(function (sub) {
          return api("POST", "/api/v1/me/push-subscriptions", sub.toJSON());
        }).then(function (r) {
          if (!r.ok) throw new Error(detail(r));
          text(btn, "推送已开启"); btn.disabled = true; flash("已开启推送通知");
        }).catch(function (e) { flash("推送不可用：" + (e && e.message ? e.message : e)); });
      };
    }, function () {});
  }

  // ---------- a one-tap link ----------
  function oneTap(token) {
    show("onetap");
    api("GET", "/api/v1/one-tap/" + encodeURIComponent(token)).then(function (r) {
      if (r.status === 410) return problem("链接已过期，请登录后查看工单。");
      if (!r.ok) return problem("链接无效（可能已改派他人）。请登录后查看。");
      renderOneTap(token, r.data);
    }, function () { problem("网络不可用，请稍后再打开此链接。"); });
  }
  function renderOneTap(token, o) {
    document.querySelector("#onetap .card.head").className = "card head " + o.severity;
    $("onetap").setAttribute("data-status", o.status);
    text($("o-sev"), o.severity_label).className = "sev " + o.severity;
    text($("o-kind"), o.kind_label);
    text($("o-status"), STATUS[o.status] || o.status).className = "status " + o.status;
    text($("o-age"), "派单于 " + clock(o.created_at));
    text($("o-code"), o.worker_name + " 的工单");
    text($("o-address"), [o.address, o.unit].filter(Boolean).join(" "));
    var ev = $("o-evidence"); ev.textContent = "";
    o.evidence.forEach(function (line) { ev.appendChild(make("li", null, line)); });
    $("o-ack").hidden = !o.can_ack;
    text($("o-note"), o.can_ack ? "此链接只能用于接单本工单，" + clock(o.expires_at) + " 前有效。" : "本工单已" + (STATUS[o.status] || o.status) + "。");
    $("o-ack").onclick = function () {
      $("o-ack").disabled = true;
      api("POST", "/api/v1/one-tap/" + encodeURIComponent(token) + "/ack").then(function (r) {
        $("o-ack").disabled = false;
        if (r.ok) { flash("已接单"); renderOneTap(token, r.data); }
        else if (r.status === 409) { flash("工单状态已变化"); oneTap(token); }
        else flash("未能接单：" + detail(r));
      }, function () { $("o-ack").disabled = false; flash("网络不可用，请联网后再点一次"); });
    };
  }
  function problem(message) { show("problem"); text($("problem-text"), message); }

  // ---------- start ----------
  function needSignIn() { me = null; show("signin"); setConn("off"); }
  function route() {
    if (!me) return;
    var m = /^#\/t\/([0-9a-fA-F-]{36})$/.exec(location.hash);
    if (m) { window.scrollTo(0, 0); openTicket(m[1]); return; }
    current = null; show("list"); renderTickets(); renderNotes(); confirmShown();
  }
  function start(who) {
    me = who;
    text($("me"), who.name || who.id);
    route();
    loadTickets(); loadNotes(); connect(); setupPush(); flush();
    clearInterval(pollTimer);
    pollTimer = setInterval(function () {
      if (!ws) { loadTickets(); loadNotes(); }
      renderTickets();
      if (document.body.getAttribute("data-state") === "list") renderNotes();
      queued().then(function (items) { if (items.length && navigator.onLine) flush(); }).catch(function () {});
    }, 20000);
  }
  function boot() {
    $("signin-form").addEventListener("submit", signIn);
    document.querySelectorAll(".tab").forEach(function (b) { b.addEventListener("click", function () { setTab(b.getAttribute("data-tab")); }); });
    $("signout").addEventListener("click", signOut);
    $("back").addEventListener("click", function () { location.hash = "#/"; });
    $("btn-ack").addEventListener("click", ack);
    $("btn-arrive").addEventListener("click", arrive);
    $("btn-resolve").addEventListener("click", function () { $("resolve-form").hidden = false; $("resolve-form").scrollIntoView(); });
    $("resolve-form").addEventListener("submit", resolve);
    $("comment-form").addEventListener("submit", comment);
    $("d-contacts-btn").addEventListener("click", contacts);
    window.addEventListener("hashchange", route);
    window.addEventListener("online", function () { setConn(ws ? "live" : "poll"); flush(); });
    window.addEventListener("offline", function () { setConn("off"); showQueue(); });
    document.addEventListener("visibilitychange", confirmShown);
    if (navigator.serviceWorker) {
      navigator.serviceWorker.register("/m/sw.js", { scope: "/m/" }).catch(function () {});
      navigator.serviceWorker.addEventListener("message", function (e) { if (e.data && e.data.type === "flush") flush(); });
    }
    var tap = /^\/m\/a\/([A-Za-z0-9_-]+)$/.exec(location.pathname);
    if (tap) { oneTap(tap[1]); return; }
    var link = /^#token=([^&]+)$/.exec(location.hash);  // `whistle demo` prints /m/#token=…: signed in once, not kept
    if (link) {
      history.replaceState(null, "", location.pathname);
      api("POST", "/api/v1/session", { token: decodeURIComponent(link[1]) }).then(function (r) {
        if (r.ok) start(r.data); else { needSignIn(); text($("si-error"), "链接中的令牌无效或已过期"); }
      }, function () { needSignIn(); text($("si-error"), "网络不可用"); });
      return;
    }
    api("GET", "/api/v1/me").then(function (r) {
      if (r.ok) start(r.data); else needSignIn();
    }, function () { needSignIn(); text($("si-error"), "网络不可用"); });
  }
  boot();
})();
