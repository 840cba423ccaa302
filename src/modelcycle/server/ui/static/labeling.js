// The annotation screen's keys, box drawing and span selection
// (templates/labeling_annotate.html). The page is a plain form that works without this
// file: everything here edits the same form fields a user could fill in by hand.
//
// Keys: 1-9 pick a class, Enter submits, S skips, ArrowLeft/ArrowRight move between
// tasks, Delete removes the selected box or span, Escape leaves a text field.
(function () {
  "use strict";

  document.documentElement.classList.add("js");

  const form = document.getElementById("label-form");
  const PALETTE = ["#2f5bd3", "#d92d20", "#079455", "#dc6803", "#7a5af8", "#0e9384",
    "#c11574", "#475467", "#ca8504"];

  function follow(id) {
    const link = document.getElementById(id);
    if (link && link.href) {
      window.location.assign(link.href);
    }
  }

  function isTyping(el) {
    if (!el || !el.tagName) return false;
    if (el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable) return true;
    if (el.tagName !== "INPUT") return false;
    return !["radio", "checkbox", "button", "submit", "reset", "hidden"].includes(el.type);
  }

  // -- rows of boxes or spans ------------------------------------------------------------
  // The table's rows are the value; drawing and selecting only add, change or remove rows.
  function RowEditor(prefix, numbers, onChange) {
    const body = document.getElementById(prefix + "-rows");
    const template = document.getElementById(prefix + "-row-template");
    let selected = null;

    function rows() {
      return Array.from(body.querySelectorAll("tr"));
    }
    function field(row, name) {
      return row.querySelector("[name='" + prefix + "-" + name + "']");
    }
    function isBlank(row) {
      return numbers.every((k) => field(row, k).value.trim() === "");
    }
    function wire(row) {
      row.querySelector(".row-remove").addEventListener("click", () => remove(row));
      row.addEventListener("input", onChange);
      row.addEventListener("change", onChange);
      row.addEventListener("focusin", () => select(row));
    }
    function items() {
      const out = [];
      for (const row of rows()) {
        const item = { row: row, label: field(row, "label").value };
        let ok = true;
        for (const k of numbers) {
          const v = Number.parseFloat(field(row, k).value);
          ok = ok && Number.isFinite(v);
          item[k] = v;
        }
        if (ok) out.push(item);
      }
      return out;
    }
    function add(item) {
      const row = template.content.firstElementChild.cloneNode(true);
      field(row, "label").value = item.label;
      for (const k of numbers) field(row, k).value = String(item[k]);
      body.appendChild(row);
      wire(row);
      select(row);
      onChange();
      return row;
    }
    function select(row) {
      selected = row;
      for (const r of rows()) r.classList.toggle("selected", r === row);
      onChange();
    }
    function remove(row) {
      if (!row) return;
      if (selected === row) selected = null;
      row.remove();
      onChange();
    }
    function removeSelected() {
      const all = rows();
      remove(selected && body.contains(selected) ? selected : all[all.length - 1]);
    }
    function relabel(label) {
      if (selected && body.contains(selected)) {
        field(selected, "label").value = label;
        onChange();
      }
    }

    for (const row of rows()) {
      if (isBlank(row)) row.remove();
      else wire(row);
    }
    return {
      items: items,
      add: add,
      select: select,
      removeSelected: removeSelected,
      relabel: relabel,
      selected: () => selected,
    };
  }

  // -- the class of the next box or span ---------------------------------------------------
  function ClassPicker() {
    const buttons = Array.from(document.querySelectorAll("#classes .class-pick"));
    let current = buttons.length ? buttons[0].dataset.label : null;
    function set(label) {
      current = label;
      for (const b of buttons) b.classList.toggle("active", b.dataset.label === label);
    }
    for (const b of buttons) b.addEventListener("click", () => set(b.dataset.label));
    return {
      current: () => current,
      set: set,
      byKey: (n) => {
        const b = buttons.find((x) => x.dataset.key === String(n));
        return b ? b.dataset.label : null;
      },
      labels: buttons.map((b) => b.dataset.label),
    };
  }

  // -- boxes drawn on the image ------------------------------------------------------------
  function Boxes() {
    const canvas = document.getElementById("box-canvas");
    const ctx = canvas ? canvas.getContext("2d") : null;
    const picker = ClassPicker();
    const editor = RowEditor("box", ["x", "y", "w", "h"], () => draw());
    const width = () => canvas.width;
    const height = () => canvas.height;
    let start = null;
    let draft = null;

    function color(label) {
      const i = picker.labels.indexOf(label);
      return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
    }
    function point(ev) {
      const r = canvas.getBoundingClientRect();
      const x = ((ev.clientX - r.left) * width()) / r.width;
      const y = ((ev.clientY - r.top) * height()) / r.height;
      return { x: Math.min(Math.max(x, 0), width()), y: Math.min(Math.max(y, 0), height()) };
    }
    function rect(a, b) {
      const x0 = Math.round(Math.min(a.x, b.x));
      const y0 = Math.round(Math.min(a.y, b.y));
      const x1 = Math.round(Math.max(a.x, b.x));
      const y1 = Math.round(Math.max(a.y, b.y));
      return { x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
    }
    function draw() {
      if (!ctx) return;
      ctx.clearRect(0, 0, width(), height());
      const line = Math.max(1, Math.round(width() / 320));
      const chosen = editor.selected();
      for (const box of editor.items()) {
        ctx.strokeStyle = color(box.label);
        ctx.lineWidth = box.row === chosen ? line * 3 : line;
        ctx.setLineDash([]);
        ctx.strokeRect(box.x, box.y, box.w, box.h);
        ctx.fillStyle = color(box.label);
        ctx.font = Math.max(10, Math.round(width() / 40)) + "px system-ui, sans-serif";
        ctx.fillText(box.label, box.x + line * 2, box.y + Math.max(10, width() / 40));
      }
      if (draft) {
        ctx.strokeStyle = color(picker.current());
        ctx.lineWidth = line;
        ctx.setLineDash([line * 4, line * 3]);
        ctx.strokeRect(draft.x, draft.y, draft.w, draft.h);
      }
    }
    function boxAt(p) {
      // The smallest box under the pointer, so nested boxes stay reachable.
      let found = null;
      for (const box of editor.items()) {
        const inside = p.x >= box.x && p.x <= box.x + box.w && p.y >= box.y && p.y <= box.y + box.h;
        if (inside && (!found || box.w * box.h < found.w * found.h)) found = box;
      }
      return found;
    }

    if (!canvas) return { picker: picker, editor: editor };
    canvas.addEventListener("pointerdown", (ev) => {
      start = point(ev);
      draft = null;
      canvas.setPointerCapture(ev.pointerId);
      ev.preventDefault();
    });
    canvas.addEventListener("pointermove", (ev) => {
      if (!start) return;
      draft = rect(start, point(ev));
      draw();
    });
    canvas.addEventListener("pointerup", (ev) => {
      if (!start) return;
      const box = rect(start, point(ev));
      const tiny = Math.max(2, Math.round(width() / 200));
      if (box.w >= tiny && box.h >= tiny) {
        editor.add({ label: picker.current(), x: box.x, y: box.y, w: box.w, h: box.h });
      } else {
        const hit = boxAt(start);
        if (hit) editor.select(hit.row);
      }
      start = null;
      draft = null;
      draw();
    });
    draw();
    return { picker: picker, editor: editor };
  }

  // -- spans selected in the text ----------------------------------------------------------
  function Spans() {
    const text = document.getElementById("task-text");
    const picker = ClassPicker();
    const source = text ? text.textContent : "";
    const editor = RowEditor("span", ["start", "end"], () => highlight());

    function offsets() {
      const sel = window.getSelection();
      if (!text || !sel || sel.isCollapsed || sel.rangeCount === 0) return null;
      const range = sel.getRangeAt(0);
      if (!text.contains(range.startContainer) || !text.contains(range.endContainer)) return null;
      const before = document.createRange();
      before.selectNodeContents(text);
      before.setEnd(range.startContainer, range.startOffset);
      const start = before.toString().length;
      return { start: start, end: start + range.toString().length };
    }
    function highlight() {
      if (!text) return;
      const chosen = editor.selected();
      const spans = editor.items().filter((s) => s.start >= 0 && s.end <= source.length && s.start < s.end);
      spans.sort((a, b) => a.start - b.start);
      text.textContent = "";
      let at = 0;
      for (const s of spans) {
        if (s.start < at) continue; // overlapping spans are in the table, not highlighted
        text.appendChild(document.createTextNode(source.slice(at, s.start)));
        const mark = document.createElement("mark");
        mark.textContent = source.slice(s.start, s.end);
        mark.title = s.label;
        if (s.row === chosen) mark.className = "selected";
        text.appendChild(mark);
        at = s.end;
      }
      text.appendChild(document.createTextNode(source.slice(at)));
    }
    function label(n) {
      const name = picker.byKey(n);
      if (!name) return;
      picker.set(name);
      const span = offsets();
      if (span) {
        editor.add({ label: name, start: span.start, end: span.end });
        window.getSelection().removeAllRanges();
      } else {
        editor.relabel(name);
      }
    }
    highlight();
    return { picker: picker, editor: editor, label: label };
  }

  // -- the page --------------------------------------------------------------------------
  if (!form) return;
  const kind = form.dataset.kind;
  const submit = document.getElementById("submit");
  const boxes = kind === "boxes" ? Boxes() : null;
  const spans = kind === "spans" ? Spans() : null;
  const editor = boxes ? boxes.editor : spans ? spans.editor : null;
  let sent = false;

  form.addEventListener("submit", (ev) => {
    if (sent) ev.preventDefault(); // one post per task, however fast the keys come
    sent = true;
  });

  function pick(n) {
    if (kind === "classification") {
      const input = form.querySelector("input[name='value'][data-key='" + n + "']");
      if (!input) return;
      input.checked = input.type === "checkbox" ? !input.checked : true;
      input.focus({ preventScroll: true });
    } else if (boxes) {
      const name = boxes.picker.byKey(n);
      if (name) {
        boxes.picker.set(name);
        boxes.editor.relabel(name);
      }
    } else if (spans) {
      spans.label(n);
    }
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const target = ev.target;
    if (isTyping(target)) {
      if (ev.key === "Escape") target.blur();
      return;
    }
    if (/^[1-9]$/.test(ev.key)) {
      ev.preventDefault();
      pick(Number(ev.key));
      return;
    }
    switch (ev.key) {
      case "Enter":
        if (target.tagName === "BUTTON" || target.tagName === "A") return; // they act natively
        ev.preventDefault();
        if (submit && !submit.disabled && !sent) form.requestSubmit(submit);
        break;
      case "s":
      case "S":
        ev.preventDefault();
        follow("skip");
        break;
      case "ArrowLeft":
        ev.preventDefault();
        follow("prev");
        break;
      case "ArrowRight":
        ev.preventDefault();
        follow("next");
        break;
      case "Delete":
      case "Backspace":
        if (editor) {
          ev.preventDefault();
          editor.removeSelected();
        }
        break;
      default:
    }
  });
})();
