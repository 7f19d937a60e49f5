// The audit page: its embedding map (drag a box to show the samples in it) and review
// by keyboard. Everything else in the console is htmx.
(function () {
  "use strict";
  const form = document.getElementById("filters");
  const canvas = document.getElementById("map");
  const PALETTE = ["#3b6fd8", "#e8743b", "#19a979", "#ed4a7b", "#945ecf", "#13a4b4",
                   "#525df4", "#bf399e", "#6c8893", "#ee6868", "#2f6497", "#b0a31a"];
  const M = 8; // the map's margin, in pixels

  function boxInputs() {
    return ["x0", "x1", "y0", "y1"].map((k) => form.querySelector(`input[name=${k}]`));
  }

  function drawMap(data) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width - 2 * M, h = canvas.height - 2 * M;
    const px = (x) => M + x * w, py = (y) => M + (1 - y) * h;
    function paint(drag) {
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      for (let i = 0; i < data.x.length; i++) {
        ctx.fillStyle = PALETTE[data.label[i] % PALETTE.length];
        ctx.fillRect(px(data.x[i]) - 1.5, py(data.y[i]) - 1.5, 3, 3);
      }
      ctx.strokeStyle = "#1d2330";
      for (let i = 0; i < data.x.length; i++) {
        if (data.flagged[i]) ctx.strokeRect(px(data.x[i]) - 2.5, py(data.y[i]) - 2.5, 5, 5);
      }
      const box = drag || boxInputs().map((e) => (e.disabled ? null : parseFloat(e.value)));
      if (box[0] !== null && box[0] !== undefined) {
        ctx.strokeStyle = "#b3261e";
        ctx.setLineDash([4, 3]);
        ctx.strokeRect(px(box[0]), py(box[3]), px(box[1]) - px(box[0]), py(box[2]) - py(box[3]));
        ctx.setLineDash([]);
      }
    }
    const at = (ev) => {
      const r = canvas.getBoundingClientRect();
      const x = ((ev.clientX - r.left) * canvas.width / r.width - M) / w;
      const y = 1 - ((ev.clientY - r.top) * canvas.height / r.height - M) / h;
      return [Math.min(1, Math.max(0, x)), Math.min(1, Math.max(0, y))];
    };
    let start = null;
    const boxOf = (a, b) => [Math.min(a[0], b[0]), Math.max(a[0], b[0]),
                             Math.min(a[1], b[1]), Math.max(a[1], b[1])];
    canvas.addEventListener("mousedown", (ev) => { start = at(ev); });
    canvas.addEventListener("mousemove", (ev) => { if (start) paint(boxOf(start, at(ev))); });
    canvas.addEventListener("mouseup", (ev) => {
      if (!start) return;
      const box = boxOf(start, at(ev));
      start = null;
      boxInputs().forEach((e, i) => { e.disabled = false; e.value = box[i].toFixed(4); });
      form.querySelector("select[name=kind]").value = "any";
      paint();
      htmx.trigger(form, "submit");
    });
    document.getElementById("clear-box").addEventListener("click", () => {
      boxInputs().forEach((e) => { e.disabled = true; });
      paint();
      htmx.trigger(form, "submit");
    });
    paint();
    canvas.dataset.points = String(data.x.length);
  }

  if (canvas) {
    fetch(canvas.dataset.src, { credentials: "same-origin" })
      .then((r) => r.json()).then(drawMap);
  }

  // Review by keyboard: j/k move between the rows, Enter opens one, a letter presses
  // one of its buttons.
  const BUTTONS = { e: "Keep", d: "Drop", o: "Outlier", r: "Relabel", u: "Undo" };
  let current = -1;
  function rows() { return Array.from(document.querySelectorAll("#samples tr.sample")); }
  function move(by) {
    const all = rows();
    if (!all.length) return;
    current = Math.min(all.length - 1, Math.max(0, current + by));
    all.forEach((r, i) => r.classList.toggle("current", i === current));
    all[current].focus();
    all[current].scrollIntoView({ block: "nearest" });
  }
  document.body.addEventListener("htmx:afterSwap", (ev) => {
    if (ev.detail.target.id === "samples") current = -1;
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.target.closest && ev.target.closest("input, select, textarea")) return;
    if (!document.getElementById("samples")) return;
    if (ev.key === "j") { move(1); ev.preventDefault(); return; }
    if (ev.key === "k") { move(-1); ev.preventDefault(); return; }
    const row = rows()[current];
    if (!row) return;
    if (ev.key === "Enter") { row.querySelector("a").click(); return; }
    const choice = row.querySelector("select");
    if (/^[0-9]$/.test(ev.key) && choice) {
      // A digit relabels: to the class of that name, or else the one at that place.
      const opts = Array.from(choice.options);
      const opt = opts.find((o) => o.text === ev.key) || opts[Number(ev.key)];
      if (!opt) return;
      choice.value = opt.value;
    }
    const name = /^[0-9]$/.test(ev.key) ? "Relabel" : BUTTONS[ev.key];
    if (!name) return;
    const button = Array.from(row.querySelectorAll("button")).find((b) => b.textContent === name);
    // A cell swapped in a moment ago may not be set up by htmx yet: set it up first.
    if (button) { htmx.process(button); button.click(); ev.preventDefault(); }
  });
})();
