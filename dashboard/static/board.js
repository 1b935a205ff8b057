// Live alert board (issue 7): the server pushes the rendered rows over server-sent events whenever the
// alerts change; EventSource reconnects by itself if the gateway restarts. No framework, no CDN.
(function () {
  "use strict";
  var board = document.getElementById("board");
  var live = document.getElementById("live");
  if (!board || !window.EventSource) { return; }
  var source = new EventSource("/alerts/stream");
  source.addEventListener("alerts", function (event) {
    board.innerHTML = event.data;
    board.dataset.updated = String(Date.now());
  });
  source.addEventListener("open", function () { if (live) { live.hidden = false; } });
  source.addEventListener("error", function () { if (live) { live.hidden = true; } });
})();
