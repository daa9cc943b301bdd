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

  // Any HTTP method token (RFC 9110 tchar), as the server's method filter takes it.
  var TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
  // The API's largest page (MAX_PAGE in echo/web/inspector/common.py).
  var MAX_PAGE = 1000;
  var UNITS = ["KiB", "MiB", "GiB", "TiB"];

  // The same sums as human_size() in echo/web/inspector/pages.py (whole
  // tenths, rounded half up, in integers), so a live row reads like a served one.
  function humanSize(size) {
    if (size < 1024) return size + " B";
    for (var unit = 0; ; unit++) {
      var scale = Math.pow(1024, unit + 1);
      var tenths = Math.floor((size * 10 + scale / 2) / scale);
      if (tenths < 10240 || unit === UNITS.length - 1) {
        return Math.floor(tenths / 10) + "." + (tenths % 10) + " " + UNITS[unit];
      }
    }
  }

  // As the duration filter in pages.py: half up, then one decimal.
  function duration(ms) {
    return (Math.floor(ms * 10 + 0.5) / 10).toFixed(1) + " ms";
  }

  // UTC, as the column header says: the time alone for today, the date too for other days.
  function shownTime(iso) {
    var today = new Date().toISOString().slice(0, 10);
    return iso.slice(0, 10) === today ? iso.slice(11, 23) : iso.slice(0, 10) + " " + iso.slice(11, 19);
  }

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

  // A bin's own view: the list filtered by bin:NAME (as the served rows link it).
  function binView(name) {
    return prefix + "?f=" + encodeURIComponent("bin:" + name);
  }

  function size(cls, what, arrow, bytes) {
    var span = document.createElement("span");
    span.className = cls;
    span.title = what + ": " + bytes + " bytes";
    span.textContent = arrow + " " + humanSize(bytes);
    return span;
  }

  // Keep in step with the rows of echo/templates/list.html.
  function rowFor(x, fresh) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-id", x.id);
    if (fresh) tr.className = "new";
    var req = x.request;
    var time = document.createElement("time");
    time.setAttribute("datetime", x.time);
    time.title = x.time;
    time.textContent = shownTime(x.time);
    link(cell(tr, "", "time"), x.id, time);
    cell(tr, req.method, "method");
    link(cell(tr, "", "path"), x.id, document.createTextNode(req.path + (req.query_string ? "?" + req.query_string : "")));
    var bin = cell(tr, "", "bin");
    if (req.bin) {
      var a = document.createElement("a");
      a.href = binView(req.bin);
      a.title = "only this bin's exchanges";
      a.textContent = req.bin;
      bin.appendChild(a);
    }
    var status = cell(tr, String(x.response.status), "status s" + Math.floor(x.response.status / 100) + "xx");
    if (x.rule) {
      var badge = document.createElement("span");
      badge.className = "rule-badge";
      badge.title = "answered by rule " + (x.rule.name || x.rule.id) + ", step " + x.rule.step +
        (x.rule.fault ? ": " + x.rule.fault + ", no answer sent" : "");
      badge.textContent = x.rule.name || x.rule.id;
      status.appendChild(document.createTextNode(" "));
      status.appendChild(badge);
    }
    cell(tr, duration(x.duration_ms), "num duration");
    var sizes = cell(tr, "", "num size");
    sizes.appendChild(size("up", "request body", "\u2191", req.body.size));
    sizes.appendChild(document.createTextNode(" "));
    sizes.appendChild(size("down", "response body", "\u2193", x.response.body.size));
    cell(tr, req.remote_addr, "client");
    return tr;
  }

  function startList() {
    var rows = document.getElementById("rows");
    var empty = document.getElementById("empty");
    var live = document.getElementById("live");
    var problem = document.getElementById("filter-problem");
    var methodInput = document.getElementById("f-method");
    var pager = document.getElementById("pager");
    var filterError = document.getElementById("filter-error");
    var partial = document.getElementById("partial");
    var table = rows.closest(".scroll");
    // A page of older exchanges (before=) stays as it is: rows arriving at the
    // top would push its rows away while they are read. "Newest" goes live again.
    var paged = rows.getAttribute("data-paged") === "1";
    var pageLimit = new URLSearchParams(location.search).get("limit");
    // The method the list is filtered by: the typed one once it is a token.
    var typed = methodInput.value.trim().toUpperCase();
    var method = TOKEN.test(typed) ? typed : "";
    if (typed && !method) methodInput.setCustomValidity("not an HTTP method");
    // Bumped by every clear and filter change: an answer to an older request
    // must not put back rows that were just cleared or filtered out.
    var generation = 0;
    var timer = null;
    var typing = null;
    var typingMethod = null;

    function filterParams() {
      var params = new URLSearchParams();
      var status = document.getElementById("f-status").value;
      var q = document.getElementById("f-q").value;
      var f = document.getElementById("f-f").value;
      if (method) params.set("method", method);
      if (status) params.set("status", status);
      if (q) params.set("q", q);
      if (f.trim()) params.set("f", f);
      if (pageLimit) params.set("limit", pageLimit);
      return params;
    }

    function checkMethod() {
      var value = methodInput.value.trim().toUpperCase();
      if (value && !TOKEN.test(value)) {
        var message = "\u201c" + value + "\u201d is not an HTTP method: one word of letters, digits and !#$%&'*+-.^_`|~";
        methodInput.setCustomValidity(message);
        problem.textContent = message;
        problem.hidden = false;
        return false;
      }
      methodInput.setCustomValidity("");
      problem.textContent = "";
      problem.hidden = true;
      method = value;
      return true;
    }

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

    // "Older" starts after the last row shown now, so the rows new arrivals
    // push off the first page are on the next one, none skipped.
    function setOlder(lastId) {
      var older = document.getElementById("older");
      if (!lastId) {
        if (older) older.remove();
        return;
      }
      if (!older) {
        older = document.createElement("a");
        older.id = "older";
        older.textContent = "Older \u2192";
        pager.appendChild(older);
      }
      var params = filterParams();
      params.set("before", lastId);
      older.href = prefix + "?" + params.toString();
    }

    function backToNewest() {
      paged = false;
      var newest = document.getElementById("newest");
      if (newest) newest.remove();
      var params = filterParams();
      history.replaceState(null, "", prefix + (params.toString() ? "?" + params.toString() : ""));
    }

    function refresh(markNew) {
      var mine = generation;
      var params = filterParams();
      params.set("bodies", "0");
      // One more than a page says whether there is an older page.
      params.set("limit", String(Math.min(ROWS + 1, MAX_PAGE)));
      return fetch(prefix + "api/exchanges?" + params.toString(), {
        headers: { Accept: "application/json" }, cache: "no-store"
      })
        .then(function (r) {
          // A bad filter is a 400 naming "f": shown instead of the list.
          if (r.status === 400) return r.json().then(function (doc) { doc.bad = true; return doc; });
          if (!r.ok) throw new Error("HTTP " + r.status);
          return r.json();
        })
        .then(function (doc) {
          if (mine !== generation || paged) return;
          if (doc.bad) {
            showFilterError(doc);
            return;
          }
          showFilterError(null);
          var page = doc.exchanges.slice(0, ROWS);
          show(page, markNew);
          // A scan cut short by --max-scan goes on from where it stopped.
          partial.hidden = !doc.partial;
          setOlder(doc.exchanges.length > ROWS ? page[page.length - 1].id : (doc.partial ? doc.next : null));
          live.textContent = "live";
          live.className = "muted";
        })
        .catch(function (err) {
          live.textContent = "not updating (" + err.message + "), retrying";
          live.className = "warn";
        });
    }

    // The error as the server renders it: the message, then the filter with the
    // character at the fault marked. Built with textContent: the filter is text.
    function showFilterError(doc) {
      table.hidden = !!doc;
      filterError.hidden = !doc;
      filterError.replaceChildren();
      if (!doc) return;
      rows.replaceChildren();
      empty.hidden = true;
      partial.hidden = true;
      setOlder(null);
      // Positions count characters (code points), as Python's do.
      var text = Array.from(String(doc.value || ""));
      var at = Number(doc.position) || 0;
      var line = document.createElement("p");
      line.textContent = (doc.error || "bad filter") + " (at position " + at + ")";
      var code = document.createElement("code");
      code.className = "filter-text";
      var mark = document.createElement("mark");
      mark.textContent = text.slice(at, at + 1).join("") || " ";
      code.append(text.slice(0, at).join(""), mark, text.slice(at + 1).join(""));
      var shown = document.createElement("p");
      shown.appendChild(code);
      filterError.append(line, shown);
    }

    function schedule() {
      clearTimeout(timer);
      timer = setTimeout(loop, POLL_MS);
    }

    function loop() {
      if (paged) { live.textContent = "live updates paused on this older page; Newest resumes them"; return; }
      if (document.hidden) { live.textContent = "paused while hidden"; return; }
      refresh(true).then(schedule);
    }

    function filtersChanged() {
      generation += 1;
      // A new filter starts from the newest exchanges, live.
      backToNewest();
      refresh(false);
      schedule();
    }

    document.getElementById("filters").addEventListener("submit", function (e) {
      e.preventDefault();
      if (checkMethod()) filtersChanged();
    });
    methodInput.addEventListener("input", function () {
      clearTimeout(typingMethod);
      typingMethod = setTimeout(function () {
        if (checkMethod()) filtersChanged();
      }, TYPING_MS);
    });
    document.getElementById("f-status").addEventListener("change", filtersChanged);
    document.getElementById("f-q").addEventListener("input", function () {
      clearTimeout(typing);
      typing = setTimeout(filtersChanged, TYPING_MS);
    });
    document.getElementById("clear").addEventListener("click", function () {
      // In a bin's view the button clears that bin alone.
      var bin = this.getAttribute("data-bin");
      // One click must not wipe what a whole team's test run recorded.
      var question = bin
        ? "Clear bin \u201c" + bin + "\u201d? Its exchanges are deleted; the rest of the history stays."
        : "Clear the history? Every kept exchange is deleted, for everyone using this Echo.";
      if (!window.confirm(question)) return;
      generation += 1;
      fetch(prefix + "api/exchanges" + (bin ? "?bin=" + encodeURIComponent(bin) : ""), { method: "DELETE" })
        .then(function (r) {
          if (!r.ok) throw new Error("HTTP " + r.status);
          rows.replaceChildren();
          empty.hidden = false;
          setOlder(null);
          backToNewest();
          schedule();
          live.textContent = bin ? "bin cleared" : "history cleared";
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
    if (paged) loop(); else schedule();
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
