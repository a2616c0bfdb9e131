// Driver page: signature pad on a canvas (pointer events: finger, pen or mouse), GPS from the browser,
// proof posted with fetch so the photo, the signature and the position travel together.
(function () {
  "use strict";
  function setupPad(canvas) {
    const ctx = canvas.getContext("2d");
    ctx.lineWidth = 3; ctx.lineCap = "round"; ctx.strokeStyle = "#111";
    let drawing = false; canvas.dataset.signed = "";
    function pos(e) {
      const r = canvas.getBoundingClientRect();
      return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
    }
    canvas.addEventListener("pointerdown", function (e) { drawing = true; const [x, y] = pos(e); ctx.beginPath(); ctx.moveTo(x, y); canvas.setPointerCapture && canvas.setPointerCapture(e.pointerId); });
    canvas.addEventListener("pointermove", function (e) { if (!drawing) return; const [x, y] = pos(e); ctx.lineTo(x, y); ctx.stroke(); canvas.dataset.signed = "1"; });
    ["pointerup", "pointerleave", "pointercancel"].forEach(function (n) { canvas.addEventListener(n, function () { drawing = false; }); });
    return function clear() { ctx.clearRect(0, 0, canvas.width, canvas.height); canvas.dataset.signed = ""; };
  }
  document.querySelectorAll("form.proof-form").forEach(function (form) {
    const canvas = form.querySelector("canvas.sigpad");
    const clear = setupPad(canvas);
    form.querySelector(".clear-sig").addEventListener("click", clear);
    const gps = form.querySelector(".gps");
    if (navigator.geolocation) {
      navigator.geolocation.getCurrentPosition(function (p) {
        form.latitude.value = p.coords.latitude; form.longitude.value = p.coords.longitude;
        gps.textContent = "Location recorded.";
      }, function () { gps.textContent = "Location not available: the proof is saved without it."; }, { timeout: 5000 });
    }
    form.addEventListener("submit", async function (e) {
      e.preventDefault();
      form.signature.value = canvas.dataset.signed ? canvas.toDataURL("image/png") : "";
      const alert = form.querySelector(".alert");
      alert.hidden = true;
      const response = await fetch(form.action, { method: "POST", body: new FormData(form), headers: { "Accept": "application/json" } });
      if (response.ok) { window.location.reload(); return; }
      let detail = "Could not save the proof (" + response.status + ").";
      try { detail = (await response.json()).detail || detail; } catch (err) { /* keep the generic text */ }
      alert.textContent = detail; alert.hidden = false;
    });
  });
})();
