// The dashboard's live updates: one EventSource; each `dashboard` event carries fresh numbers and the
// re-rendered sections, swapped in place (no reload). Reconnects on its own (server sends `retry`).
(function () {
  "use strict";
  var script = document.currentScript;

  // Charts: each <canvas data-chart='{...}'> is drawn by Chart.js (vendored, /static/vendor/chartjs) from the
  // numbers the server rendered into it; redrawn whenever a live update swaps its section in.
  function format(v, unit) {
    if (v === null || v === undefined) { return "—"; }
    var n = Math.round(v * 100) / 100;
    return unit === "%" ? n.toFixed(1) + "%" : n.toLocaleString();
  }
  function drawCharts(root) {
    if (!window.Chart) { return; }
    document.body.classList.add("charts-on");
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var spec = JSON.parse(canvas.getAttribute("data-chart"));
      var old = window.Chart.getChart(canvas);
      if (old) { old.destroy(); }
      var stair = spec.type === "stair";
      var options = {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        indexAxis: stair ? "y" : "x",
        plugins: {
          legend: { display: stair, position: "bottom" },
          title: { display: false, text: spec.title },
          tooltip: {
            callbacks: {
              label: function (ctx) {
                var text = ctx.dataset.label + ": " + format(ctx.raw, spec.unit);
                if (spec.orders) { text += " (" + spec.orders[ctx.dataIndex] + " orders)"; }
                return text;
              }
            }
          }
        },
        scales: {
          x: { stacked: stair, beginAtZero: true },
          y: { stacked: stair, beginAtZero: true }
        }
      };
      if (!stair && spec.max) { options.scales.y.max = spec.max; }
      if (spec.links) {
        options.onClick = function (event, elements) {
          if (elements.length) { window.location.href = spec.links[elements[0].index]; }
        };
        options.onHover = function (event, elements) {
          event.native.target.style.cursor = elements.length ? "pointer" : "default";
        };
      }
      new window.Chart(canvas, {
        type: "bar",
        data: {
          labels: spec.labels,
          datasets: spec.datasets.map(function (d) {
            return { label: d.label, data: d.data, backgroundColor: d.color, borderWidth: 0 };
          })
        },
        options: options
      });
    });
  }
  drawCharts(document);

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
      if (el) { el.innerHTML = data.sections[name]; drawCharts(el); }
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
