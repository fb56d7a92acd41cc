// The review page's behaviour: keep / drop per card by click or key, a running count, decisions kept in local
// storage, and overrides.csv (path,action) downloaded from them. Plain DOM, no library; works from file://.
// Every card element is looked up once: a key press touches the cards it changes, never the whole list.
(function () {
  "use strict";
  var started = performance.now();
  var data = JSON.parse(document.getElementById("review-data").textContent);
  var cards = Array.prototype.slice.call(document.querySelectorAll("#cards .rcard"));
  var state = data.initial.slice(); // per card: "keep", "drop" or null
  var counts = { keep: 0, drop: 0 };
  var current = 0;
  var storage = openStorage();
  var note = document.getElementById("note");
  var viewer = document.getElementById("viewer");

  function openStorage() {
    try {
      localStorage.setItem(data.key + ":probe", "1");
      localStorage.removeItem(data.key + ":probe");
      return localStorage;
    } catch (error) {
      return null; // private mode or storage switched off: decisions last until the page closes
    }
  }

  // Only what differs from how the page opened is stored; "" records an earlier decision undone.
  function save() {
    if (!storage) return;
    var changed = {};
    for (var i = 0; i < state.length; i++) {
      if (state[i] !== data.initial[i]) changed[data.paths[i]] = state[i] || "";
    }
    storage.setItem(data.key, JSON.stringify(changed));
  }

  function restore() {
    var saved = storage && JSON.parse(storage.getItem(data.key) || "{}");
    var restored = 0;
    for (var i = 0; saved && i < data.paths.length; i++) {
      if (Object.prototype.hasOwnProperty.call(saved, data.paths[i])) {
        state[i] = saved[data.paths[i]] || null;
        restored++;
      }
    }
    return restored;
  }

  function showCard(i) {
    var card = cards[i];
    card.dataset.decision = state[i] || "";
    card.querySelector(".state").textContent = state[i] ? "decided: " + state[i] : "";
  }

  function showCounts() {
    var decided = counts.keep + counts.drop;
    document.getElementById("decided").textContent = decided;
    document.getElementById("left").textContent = cards.length - decided;
    document.getElementById("kept").textContent = counts.keep;
    document.getElementById("dropped").textContent = counts.drop;
    document.documentElement.dataset.decided = String(decided);
  }

  function decide(i, decision) {
    if (state[i]) counts[state[i]]--;
    state[i] = decision;
    if (decision) counts[decision]++;
    showCard(i);
    showCounts();
    save();
  }

  function select(i, scroll) {
    if (!cards.length) return;
    cards[current].classList.remove("current");
    current = Math.max(0, Math.min(cards.length - 1, i));
    cards[current].classList.add("current");
    if (scroll) cards[current].scrollIntoView({ block: "nearest" });
    if (!viewer.hidden) openViewer(current);
  }

  // The next card without a decision after the current one, wrapping round; else simply the next card.
  function nextUndecided() {
    for (var step = 1; step <= cards.length; step++) {
      var i = (current + step) % cards.length;
      if (!state[i]) return i;
    }
    return current + 1;
  }

  function openViewer(i) {
    var stage = viewer.querySelector(".stage");
    stage.textContent = "";
    cards[i].querySelectorAll(".pic").forEach(function (picture) {
      stage.appendChild(picture.cloneNode(true));
    });
    var relation = cards[i].querySelector(".relation");
    viewer.querySelector(".caption").textContent = cards[i].querySelector(".name").textContent
      + (relation ? " · " + relation.textContent : "") + (state[i] ? " · decided: " + state[i] : "");
    viewer.hidden = false;
  }

  function csvField(text) {
    return /[",\r\n]/.test(text) || text !== text.trim() ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  function download() {
    var lines = ["path,action"];
    for (var i = 0; i < state.length; i++) {
      if (state[i]) lines.push(csvField(data.paths[i]) + "," + state[i]);
    }
    data.carried.forEach(function (row) { lines.push(csvField(row[0]) + "," + row[1]); });
    var link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv;charset=utf-8" }));
    link.download = "overrides.csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(link.href); }, 0);
  }

  var keys = {
    k: function () { decide(current, "keep"); select(nextUndecided(), true); },
    d: function () { decide(current, "drop"); select(nextUndecided(), true); },
    u: function () { decide(current, null); },
    ArrowRight: function () { select(current + 1, true); },
    ArrowDown: function () { select(current + 1, true); },
    ArrowLeft: function () { select(current - 1, true); },
    ArrowUp: function () { select(current - 1, true); },
    Enter: function () { openViewer(current); },
    Escape: function () { viewer.hidden = true; },
  };

  document.addEventListener("keydown", function (event) {
    var action = keys[event.key.length === 1 ? event.key.toLowerCase() : event.key];
    if (!action || !cards.length || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest && event.target.closest("summary, input, textarea, select")) return;
    event.preventDefault();
    action();
  });

  document.getElementById("cards") && document.getElementById("cards").addEventListener("click", function (event) {
    var card = event.target.closest(".rcard");
    if (!card) return;
    var i = Number(card.dataset.i);
    var button = event.target.closest("button");
    select(i, false);
    if (button && button.dataset.decision) decide(i, state[i] === button.dataset.decision ? null : button.dataset.decision);
    else if (button && button.classList.contains("pic")) openViewer(i);
  });
  viewer.addEventListener("click", function () { viewer.hidden = true; });
  document.getElementById("download").addEventListener("click", download);

  var restored = restore();
  for (var i = 0; i < cards.length; i++) {
    if (state[i]) counts[state[i]]++;
    if (state[i] || data.initial[i]) showCard(i);
  }
  showCounts();
  select(state[0] ? nextUndecided() : 0, false);
  if (restored) note.textContent = restored + " decisions restored from this browser.";
  if (!storage) note.textContent = "This browser keeps no local storage here: download before closing the page.";
  document.documentElement.dataset.reviewReady = "1";
  document.documentElement.dataset.initMs = (performance.now() - started).toFixed(1);
  document.documentElement.dataset.renderMs = performance.now().toFixed(1); // since navigation started
})();
