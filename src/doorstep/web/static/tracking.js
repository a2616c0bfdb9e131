// Tracking page: a link from a message (?action=reschedule ...) opens its section on the server; this brings
// it into view and moves the keyboard focus there. The page works without it.
(function () {
  "use strict";
  var script = document.currentScript;
  var action = script && script.getAttribute("data-action");
  if (!action) { return; }
  var target = action === "return_label" ? document.getElementById("returns") : document.querySelector("details[open][id^='act-']");
  if (!target) { return; }
  target.scrollIntoView({ block: "start" });
  var focusable = target.matches("details") ? target.querySelector("summary") : target.querySelector("a, button, summary");
  if (focusable) { focusable.focus({ preventScroll: true }); }
})();
