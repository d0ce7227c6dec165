/* 数字吹哨 · the worker page's service worker (scope /m/).
 *
 * - Keeps the page's shell (HTML, script, style, icons) so the page opens without a network; the API is never
 *   cached (tickets change, and personal data must not sit in a cache).
 * - Shows Web Push notifications (the payload of alerts.channels.webpush: id, kind, severity, title, body,
 *   ticket_id, url, ack_url) and, when one is tapped, confirms it (POST /api/v1/me/notifications/receipts,
 *   via push_click: delivered means seen) and opens its ticket — the one-tap link for its assignee.
 * - Background sync: actions queued while offline (IndexedDB, written by app.js) are sent when the network
 *   is back, by the page if one is open, else here; one at a time (a Web Lock shared with the page).
 */
"use strict";

var CACHE = "whistle-worker-v2";  // a new name for each change of the shell: the old one is dropped
var SHELL = ["/m/", "/m/app.js", "/m/app.css", "/m/manifest.webmanifest", "/m/icons/icon-192.png", "/m/icons/icon-512.png"];
var SEV = { critical: "紧急", major: "重要", minor: "一般", warning: "提示" };

self.addEventListener("install", function (event) {
  event.waitUntil(caches.open(CACHE).then(function (c) { return c.addAll(SHELL); }).then(function () { return self.skipWaiting(); }));
});

self.addEventListener("activate", function (event) {
  event.waitUntil(caches.keys().then(function (keys) {
    return Promise.all(keys.filter(function (k) { return k !== CACHE; }).map(function (k) { return caches.delete(k); }));
  }).then(function () { return self.clients.claim(); }));
});

self.addEventListener("fetch", function (event) {
  var req = event.request, url = new URL(req.url);
  if (req.method !== "GET" || url.origin !== self.location.origin || !url.pathname.startsWith("/m/")) return;
  if (req.mode === "navigate") {  // the page itself (/m/, /m/a/<token>): the network first, the shell offline
    event.respondWith(fetch(req).catch(function () { return caches.match("/m/"); }));
    return;
  }
  event.respondWith(caches.match(req).then(function (hit) {
    var fresh = fetch(req).then(function (res) {
      if (res.ok) { var copy = res.clone(); caches.open(CACHE).then(function (c) { c.put(req, copy); }); }
      return res;
    });
    return hit || fresh;
  }));
});

self.addEventListener("push", function (event) {
  var n = {};
  try { n = event.data ? event.data.json() : {}; } catch (e) { n = { title: event.data ? event.data.text() : "" }; }
  var title = "【" + (SEV[n.severity] || "通知") + "】" + (n.title || "数字吹哨");
  event.waitUntil(self.registration.showNotification(title, {
    body: n.body || "",
    tag: n.id || undefined,
    renotify: true,
    requireInteraction: n.severity === "critical",
    icon: "/m/icons/icon-192.png",
    badge: "/m/icons/icon-192.png",
    data: { id: n.id, ticket_id: n.ticket_id, url: n.url, ack_url: n.ack_url }
  }));
});

self.addEventListener("notificationclick", function (event) {
  var d = event.notification.data || {};
  event.notification.close();
  var receipt = d.id ? fetch("/api/v1/me/notifications/receipts", {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ids: [d.id], via: "push_click" })
  }).catch(function () {}) : Promise.resolve();
  var target = d.ack_url || d.url || "/m/";
  event.waitUntil(Promise.all([receipt, self.clients.matchAll({ type: "window", includeUncontrolled: true }).then(function (list) {
    for (var i = 0; i < list.length; i++) {
      if (list[i].url.indexOf("/m/") >= 0 && "focus" in list[i] && d.ticket_id) {
        list[i].navigate("/m/#/t/" + d.ticket_id);
        return list[i].focus();
      }
    }
    return self.clients.openWindow(target);
  })]));
});

// -- background sync of the offline queue --
function idb() {
  return new Promise(function (resolve, reject) {
    var open = indexedDB.open("whistle-worker", 1);
    open.onupgradeneeded = function () { open.result.createObjectStore("outbox", { keyPath: "n", autoIncrement: true }); };
    open.onsuccess = function () { resolve(open.result); };
    open.onerror = function () { reject(open.error); };
  });
}
function all() {
  return idb().then(function (db) {
    return new Promise(function (resolve, reject) {
      var req = db.transaction("outbox").objectStore("outbox").getAll();
      req.onsuccess = function () { db.close(); resolve(req.result); };
      req.onerror = function () { db.close(); reject(req.error); };
    });
  });
}
function drop(n) {
  return idb().then(function (db) {
    return new Promise(function (resolve) {
      var tx = db.transaction("outbox", "readwrite");
      tx.objectStore("outbox").delete(n);
      tx.oncomplete = function () { db.close(); resolve(); };
      tx.onerror = function () { db.close(); resolve(); };
    });
  });
}
function flushHere() {
  return all().then(function (items) {
    return items.reduce(function (chain, item) {
      return chain.then(function () {
        var verb = item.verb === "comment" ? "comments" : item.verb;
        return fetch("/api/v1/tickets/" + item.ticket_id + "/" + verb, {
          method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
          body: JSON.stringify(item.body)
        }).then(function (r) {
          if (r.status === 401 || r.status === 429 || r.status >= 500) throw new Error("later");
          return drop(item.n);
        });
      });
    }, Promise.resolve());
  });
}
self.addEventListener("sync", function (event) {
  if (event.tag !== "whistle-outbox") return;
  event.waitUntil(self.clients.matchAll({ type: "window" }).then(function (list) {
    if (list.length) { list.forEach(function (c) { c.postMessage({ type: "flush" }); }); return null; }
    var run = function () { return flushHere(); };
    return self.navigator && self.navigator.locks ? self.navigator.locks.request("whistle-outbox", run) : run();
  }));
});
