// Echo inspector: the live history list (filters, clear) and copy-as-curl.
// Request data is only ever placed with textContent and attribute setters,
// never parsed as HTML, so whatever a request held is shown as text.
(function () {
  "use strict";
  var prefix = document.body.getAttribute("data-prefix") || "/_/";
  // The list asks for new exchanges this often; the contract is "within 2 s".
  var POLL_MS = 1000;
  // Rows the list shows: the page says how many (LIST_ROWS in echo/web/inspector/common.py).
  var rowsTable = document.getElementById("rows");
  var ROWS = Number(rowsTable && rowsTable.getAttribute("data-rows")) || 200;
  // Typing in the path filter waits this long for a pause before asking.
  var TYPING_MS = 200;

  function cell(row, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function link(td, id, child) {
    var a = document.createElement("a");
    a.href = prefix + "exchanges/" + encodeURIComponent(id);
    a.appendChild(child);
    td.appendChild(a);
  }

  function rowFor(x, fresh) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-id", x.id);
    if (fresh) tr.className = "new";
    var req = x.request;
    var time = document.createElement("time");
    time.setAttribute("datetime", x.time);
    time.title = x.time;
    time.textContent = x.time.slice(11, 23);
    link(cell(tr, "", "time"), x.id, time);
    cell(tr, req.method, "method");
    link(cell(tr, "", "path"), x.id, document.createTextNode(req.path + (req.query_string ? "?" + req.query_string : "")));
    cell(tr, String(x.response.status), "status s" + Math.floor(x.response.status / 100) + "xx");
    cell(tr, x.duration_ms.toFixed(1) + " ms", "num");
    cell(tr, req.body.size + " B / " + x.response.body.size + " B", "num");
    cell(tr, req.remote_addr, "client");
    return tr;
  }

  function filterParams() {
    var params = new URLSearchParams();
    var method = document.getElementById("f-method").value;
    var status = document.getElementById("f-status").value;
    var q = document.getElementById("f-q").value;
    if (method) params.set("method", method);
    if (status) params.set("status", status);
    if (q) params.set("q", q);
    return params;
  }

  function startList() {
    var rows = document.getElementById("rows");
    var empty = document.getElementById("empty");
    var live = document.getElementById("live");
    // Bumped by every clear and filter change: an answer to an older request
    // must not put back rows that were just cleared or filtered out.
    var generation = 0;
    var timer = null;
    var typing = null;

    function shownIds() {
      return Array.prototype.map.call(rows.querySelectorAll("tr[data-id]"), function (tr) {
        return tr.getAttribute("data-id");
      });
    }

    function show(exchanges, markNew) {
      var current = {};
      Array.prototype.forEach.call(rows.querySelectorAll("tr[data-id]"), function (tr) {
        current[tr.getAttribute("data-id")] = tr;
      });
      var wanted = exchanges.map(function (x) { return x.id; });
      if (wanted.join(",") !== shownIds().join(",")) {
        var frag = document.createDocumentFragment();
        exchanges.forEach(function (x) {
          // A kept exchange never changes, so its row is reused as it is.
          frag.appendChild(current[x.id] || rowFor(x, markNew));
        });
        rows.replaceChildren(frag);
      }
      empty.hidden = exchanges.length > 0;
    }

    function refresh(markNew) {
      var mine = generation;
      var params = filterParams();
      params.set("bodies", "0");
      params.set("limit", String(ROWS));
      return fetch(prefix + "api/exchanges?" + params.toString(), {
        headers: { Accept: "application/json" }, cache: "no-store"
      })
        .then(function (r) {
          if (!r.ok) throw new Error("HTTP " + r.status);
          return r.json();
        })
        .then(function (doc) {
          if (mine !== generation) return;
          show(doc.exchanges, markNew);
          live.textContent = "live";
          live.className = "muted";
        })
        .catch(function (err) {
          live.textContent = "not updating (" + err.message + "), retrying";
          live.className = "warn";
        });
    }

    function schedule() {
      clearTimeout(timer);
      timer = setTimeout(loop, POLL_MS);
    }

    function loop() {
      if (document.hidden) { live.textContent = "paused while hidden"; return; }
      refresh(true).then(schedule);
    }

    function filtersChanged() {
      generation += 1;
      var params = filterParams();
      history.replaceState(null, "", prefix + (params.toString() ? "?" + params.toString() : ""));
      refresh(false);
    }

    document.getElementById("filters").addEventListener("submit", function (e) {
      e.preventDefault();
      filtersChanged();
    });
    document.getElementById("f-method").addEventListener("change", filtersChanged);
    document.getElementById("f-status").addEventListener("change", filtersChanged);
    document.getElementById("f-q").addEventListener("input", function () {
      clearTimeout(typing);
      typing = setTimeout(filtersChanged, TYPING_MS);
    });
    document.getElementById("clear").addEventListener("click", function () {
      generation += 1;
      fetch(prefix + "api/exchanges", { method: "DELETE" })
        .then(function (r) {
          if (!r.ok) throw new Error("HTTP " + r.status);
          rows.replaceChildren();
          empty.hidden = false;
          live.textContent = "history cleared";
          live.className = "muted";
        })
        .catch(function (err) {
          live.textContent = "could not clear (" + err.message + ")";
          live.className = "warn";
        });
    });
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) { clearTimeout(timer); loop(); }
    });
    schedule();
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { fallbackCopy(text); });
    }
    return new Promise(function (resolve) { fallbackCopy(text); resolve(); });
  }

  function fallbackCopy(text) {
    // Pages over plain http (not localhost) have no clipboard API.
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    if (!ok) throw new Error("copy refused");
  }

  function startDetail() {
    var button = document.getElementById("copy-curl");
    if (!button) return;
    button.addEventListener("click", function () {
      var text = document.getElementById(button.getAttribute("data-target")).textContent;
      copy(text).then(function () { button.textContent = "Copied"; }, function () {
        button.textContent = "Select and copy by hand";
      }).then(function () {
        setTimeout(function () { button.textContent = "Copy"; }, 1500);
      });
    });
  }

  if (document.getElementById("rows")) startList();
  startDetail();
})();
