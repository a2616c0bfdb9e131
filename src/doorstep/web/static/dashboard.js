// The dashboard's live updates: one EventSource; each `dashboard` event carries fresh numbers and the
// re-rendered sections, swapped in place (no reload). Reconnects on its own (server sends `retry`).
(function () {
  "use strict";
  var script = document.currentScript;
  var url = script && script.getAttribute("data-stream");
  var status = document.getElementById("live-status");
  if (!url || !window.EventSource) { return; }
  var source = new EventSource(url);
  function values() {
    var out = {};
    document.querySelectorAll(".tile[data-metric]").forEach(function (t) {
      var v = t.querySelector(".value");
      out[t.getAttribute("data-metric")] = v ? v.getAttribute("data-value") : null;
    });
    return out;
  }
  source.addEventListener("hello", function () {
    if (status) { status.classList.remove("offline"); }
  });
  source.addEventListener("dashboard", function (e) {
    var data = JSON.parse(e.data);
    var before = values();
    Object.keys(data.sections || {}).forEach(function (name) {
      var el = document.getElementById("section-" + name);
      if (el) { el.innerHTML = data.sections[name]; }
    });
    var after = values();
    Object.keys(after).forEach(function (k) {
      if (before[k] !== after[k]) {
        var tile = document.querySelector('.tile[data-metric="' + k + '"]');
        if (tile) { tile.classList.add("updated"); }
      }
    });
    if (status) {
      status.textContent = "live · updated " + new Date().toLocaleTimeString() + " · computed in " + data.computed_ms + " ms";
      status.setAttribute("data-version", data.version);
      status.classList.add("flash");
      setTimeout(function () { status.classList.remove("flash"); }, 1200);
    }
  });
  source.onerror = function () {
    if (status) { status.classList.add("offline"); status.textContent = "reconnecting…"; }
  };
})();
