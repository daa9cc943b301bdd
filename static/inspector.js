// Echo inspector: live history list, filters, clear, and copy-as-curl.
// Request data is only ever placed with textContent, never as HTML.
(function () {
  "use strict";
  var prefix = document.body.getAttribute("data-prefix") || "/_/";
  var POLL_MS = 1000;

  function cell(row, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function link(td, id, text) {
    td.textContent = "";
    var a = document.createElement("a");
    a.href = prefix + "exchanges/" + encodeURIComponent(id);
    a.textContent = text;
    td.appendChild(a);
  }

  function rowFor(x, fresh) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-id", x.id);
    if (fresh) tr.className = "new";
    var req = x.request;
    link(cell(tr, ""), x.id, x.time);
    cell(tr, req.method, "method");
    link(cell(tr, "", "path"), x.id, req.path + (req.query_string ? "?" + req.query_string : ""));
    cell(tr, String(x.response.status), "status s" + Math.floor(x.response.status / 100) + "xx");
    cell(tr, x.duration_ms.toFixed(1) + " ms", "num");
    cell(tr, req.body.size + " B", "num");
    cell(tr, req.remote_addr);
    return tr;
  }

  function filterQuery() {
    var params = new URLSearchParams();
    var method = document.getElementById("f-method").value;
    var status = document.getElementById("f-status").value;
    var q = document.getElementById("f-q").value;
    if (method) params.set("method", method);
    if (status) params.set("status", status);
    if (q) params.set("q", q);
    params.set("bodies", "0");
    params.set("limit", "200");
    return params;
  }

  function startList() {
    var rows = document.getElementById("rows");
    var empty = document.getElementById("empty");
    var live = document.getElementById("live");
    var first = true;

    function refresh() {
      return fetch(prefix + "api/exchanges?" + filterQuery().toString(), { headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
        .then(function (doc) {
          var known = {};
          Array.prototype.forEach.call(rows.querySelectorAll("tr[data-id]"), function (tr) {
            known[tr.getAttribute("data-id")] = true;
          });
          var frag = document.createDocumentFragment();
          doc.exchanges.forEach(function (x) { frag.appendChild(rowFor(x, !first && !known[x.id])); });
          rows.replaceChildren(frag);
          empty.hidden = doc.exchanges.length > 0;
          live.textContent = "live";
          first = false;
        })
        .catch(function (err) { live.textContent = "offline (" + err.message + ")"; });
    }

    function loop() { refresh().then(function () { setTimeout(loop, POLL_MS); }); }

    document.getElementById("filters").addEventListener("submit", function (e) {
      e.preventDefault();
      var params = filterQuery();
      params.delete("bodies"); params.delete("limit");
      history.replaceState(null, "", prefix + (params.toString() ? "?" + params.toString() : ""));
      refresh();
    });
    ["f-method", "f-status"].forEach(function (id) {
      document.getElementById(id).addEventListener("change", function () { refresh(); });
    });
    document.getElementById("f-q").addEventListener("input", function () { refresh(); });
    document.getElementById("clear").addEventListener("click", function () {
      fetch(prefix + "api/exchanges", { method: "DELETE" }).then(function () {
        rows.replaceChildren();
        empty.hidden = false;
        return refresh();
      });
    });
    loop();
  }

  function startDetail() {
    var button = document.getElementById("copy-curl");
    if (!button) return;
    button.addEventListener("click", function () {
      var text = document.getElementById(button.getAttribute("data-target")).textContent;
      var done = function () { button.textContent = "Copied"; setTimeout(function () { button.textContent = "Copy"; }, 1500); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
      } else { fallback(text); done(); }
    });
  }

  function fallback(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* nothing else to try */ }
    document.body.removeChild(area);
  }

  if (document.getElementById("rows")) startList();
  startDetail();
})();
