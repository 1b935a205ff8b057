// Live alert board: the server pushes the rendered rows over server-sent events whenever the alerts change.
// A board that stops updating must not look like a quiet night: when the stream drops (server restart,
// network, session ended) a red banner says so at once; the board reconnects by itself from the last
// event id and lists the alerts opened meanwhile; an ended session offers the login instead. No framework.
(function () {
  "use strict";
  var board = document.getElementById("board");
  var live = document.getElementById("live");
  var banner = document.getElementById("stream-banner");
  var missedBox = document.getElementById("missed");
  var soundButton = document.getElementById("sound");
  if (!board || !window.EventSource) { return; }

  var SILENT_MS = 4500;  // the server pings every 2 s: this long without a word means the stream is gone
  var SOUND_KEY = "isowatch.sound";
  var source = null;
  var cursor = board.dataset.cursor || null;  // the newest alert id the board has shown (the stream's event id)
  var lastWord = 0;
  var dropped = false;
  var ended = false;
  var retryMs = 1000;
  var retryTimer = null;
  var backTimer = null;
  var known = alertIds();

  function alertIds() {
    var ids = {};
    board.querySelectorAll("[data-alert]").forEach(function (el) { ids[el.getAttribute("data-alert")] = true; });
    return ids;
  }

  function say(kind) {
    if (!banner) { return; }
    clearTimeout(backTimer);
    banner.querySelector(".text").textContent = banner.dataset[kind];
    banner.classList.toggle("back", kind === "back");
    banner.querySelector(".login-again").hidden = kind !== "ended";
    banner.hidden = false;
    banner.dataset.state = kind;
    if (kind === "back") {
      backTimer = setTimeout(function () { banner.hidden = true; banner.dataset.state = ""; }, 3000);
    }
  }

  function alive() {
    lastWord = Date.now();
    if (dropped) { dropped = false; retryMs = 1000; say("back"); }
    if (live) { live.hidden = false; }
  }

  function drop() {
    if (ended) { return; }
    if (source) { source.close(); source = null; }
    if (live) { live.hidden = true; }
    if (!dropped) { dropped = true; say("lost"); }
    clearTimeout(retryTimer);
    // A stream refused for want of a session looks like any failure to EventSource: ask before retrying.
    fetch("/api/v1/me", { credentials: "same-origin", cache: "no-store" }).then(function (answer) {
      if (answer.status === 401) { end(); } else { later(); }
    }, later);
  }

  function later() {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 10000);
  }

  function end() {
    ended = true;
    if (source) { source.close(); source = null; }
    if (live) { live.hidden = true; }
    say("ended");
  }

  function showMissed(list) {
    if (!missedBox || !list.length) { return; }
    missedBox.textContent = "";
    var title = document.createElement("strong");
    title.textContent = missedBox.dataset.title.replace("{n}", String(list.length));
    var items = document.createElement("ul");
    list.forEach(function (a) {
      var item = document.createElement("li");
      var link = document.createElement("a");
      link.href = "/alerts/" + a.id;
      link.textContent = "#" + a.id + " " + a.kind + " · " + a.household;
      item.appendChild(link);
      if (a.resolved) { item.appendChild(document.createTextNode(" (" + missedBox.dataset.resolved + ")")); }
      items.appendChild(item);
    });
    missedBox.appendChild(title);
    missedBox.appendChild(items);
    missedBox.hidden = false;
  }

  function connect() {
    if (ended) { return; }
    var query = [];
    if (cursor !== null) { query.push("since=" + encodeURIComponent(cursor)); }
    if (board.dataset.mine) { query.push("mine=1"); }
    source = new EventSource("/alerts/stream" + (query.length ? "?" + query.join("&") : ""));
    source.addEventListener("open", alive);
    source.addEventListener("ping", alive);
    source.addEventListener("alerts", function (event) {
      alive();
      board.innerHTML = event.data;
      board.dataset.updated = String(Date.now());
      if (event.lastEventId) { cursor = event.lastEventId; board.dataset.cursor = cursor; }
      var now = alertIds();
      var fresh = Object.keys(now).some(function (id) { return !known[id]; });
      known = now;
      if (fresh) { chime(); }
    });
    source.addEventListener("missed", function (event) { alive(); showMissed(JSON.parse(event.data)); });
    source.addEventListener("session_end", end);
    source.addEventListener("bye", function () { source.close(); source = null; connect(); });
    source.addEventListener("error", drop);
  }

  setInterval(function () {
    if (source && !dropped && lastWord && Date.now() - lastWord > SILENT_MS) { drop(); }
  }, 500);

  // Opt-in sound for new alerts; the choice is kept in this browser. Browsers only let a page play sound
  // after a tap, so the audio is set up by the toggle (and by any later tap after a reload).
  var audio = null;

  function soundOn() { return window.localStorage && localStorage.getItem(SOUND_KEY) === "on"; }

  function prepareAudio() {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!audio && Context) { audio = new Context(); }
    if (audio && audio.state === "suspended") { audio.resume(); }
  }

  function chime() {
    if (!soundOn()) { return; }
    board.dataset.chimes = String(Number(board.dataset.chimes || 0) + 1);
    prepareAudio();
    if (!audio) { return; }
    [0, 0.3].forEach(function (start) {
      var tone = audio.createOscillator();
      var gain = audio.createGain();
      tone.frequency.value = 880;
      gain.gain.value = 0.25;
      tone.connect(gain);
      gain.connect(audio.destination);
      tone.start(audio.currentTime + start);
      tone.stop(audio.currentTime + start + 0.2);
    });
  }

  function showSound() {
    if (!soundButton) { return; }
    var on = soundOn();
    soundButton.setAttribute("aria-pressed", on ? "true" : "false");
    soundButton.textContent = on ? soundButton.dataset.on : soundButton.dataset.off;
  }

  if (soundButton) {
    soundButton.addEventListener("click", function () {
      localStorage.setItem(SOUND_KEY, soundOn() ? "off" : "on");
      if (soundOn()) { prepareAudio(); }
      showSound();
    });
    document.addEventListener("click", function () { if (soundOn()) { prepareAudio(); } }, { once: true });
    showSound();
  }

  connect();
})();
