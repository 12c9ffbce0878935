// Keyboard shortcuts for the reader's form (listed on the page): R / S make the real/synthetic
// call, 1-5 rate the highlighted question, [ and ] move the highlight, N focuses the comment,
// Enter submits. They click the same Streamlit widgets a mouse would, so the server validates and
// stores exactly what a click would send. Mounted by reader_study/form_keys.py.

// Page-wide state on window, so that a re-evaluated module never adds a second key listener.
const state = (window.__medsynthFormKeys = window.__medsynthFormKeys || { spec: null, active: 0, listening: false });

function widget(key) {
  return document.querySelector(`.st-key-${CSS.escape(key)}`);
}

function answered(key) {
  const el = widget(key);
  return !!(el && el.querySelector("input:checked"));
}

function choose(key, text) {
  const el = widget(key);
  if (!el) return false;
  const option = Array.from(el.querySelectorAll("label")).find((l) => l.textContent.trim() === text);
  if (!option) return false;
  option.click();
  return true;
}

function highlight() {
  if (!state.spec) return;
  state.spec.ratings.forEach((r, i) => {
    const el = widget(r.key);
    if (el) el.classList.toggle("msk-active", i === state.active);
  });
}

function nextUnanswered(from) {
  for (let i = 0; i < state.spec.ratings.length; i++) {
    const j = (from + i) % state.spec.ratings.length;
    if (!answered(state.spec.ratings[j].key)) return j;
  }
  return Math.min(from, state.spec.ratings.length - 1);
}

function typing(target) {
  if (!target || !target.tagName) return false;
  const tag = target.tagName;
  if (tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable) return true;
  return tag === "INPUT" && !["radio", "checkbox", "button", "submit"].includes(target.type);
}

function submit() {
  const buttons = Array.from(document.querySelectorAll("button"));
  const button = buttons.find((b) => b.textContent.trim() === state.spec.submit);
  if (button) button.click();
}

function onKey(e) {
  if (!state.spec || e.altKey || e.metaKey) return;
  if (e.key === "Enter" && e.ctrlKey) { e.preventDefault(); submit(); return; }  // also from the comment box
  if (e.ctrlKey || typing(e.target)) return;
  const k = e.key.toLowerCase();
  let handled = true;
  if (state.spec.call && (k === "r" || k === "s")) handled = choose(state.spec.call.key, k === "r" ? state.spec.call.real : state.spec.call.synthetic);
  else if (/^[0-9]$/.test(k) && state.spec.ratings.length) {
    const rating = state.spec.ratings[state.active];
    handled = choose(rating.key, k);
    if (handled) {  // move on once the click has reached the widget
      requestAnimationFrame(() => { state.active = nextUnanswered(state.active); highlight(); });
    }
  } else if (k === "]" && state.spec.ratings.length) { state.active = Math.min(state.active + 1, state.spec.ratings.length - 1); highlight(); }
  else if (k === "[" && state.spec.ratings.length) { state.active = Math.max(state.active - 1, 0); highlight(); }
  else if (k === "n" && state.spec.comment) {
    const box = widget(state.spec.comment);
    const area = box && box.querySelector("textarea");
    if (area) area.focus();
  } else if (e.key === "Enter" && !(e.target && e.target.tagName === "BUTTON")) submit();
  else handled = false;
  if (handled) e.preventDefault();
}
if (!state.listening) {
  document.addEventListener("keydown", (e) => state.onKey(e), true);  // capture: radios stop Enter bubbling
  state.listening = true;
}
state.onKey = onKey;

// Streamlit re-renders the form's widgets after each answer (a fragment run): put the highlight back.
if (!state.observer) {
  state.observer = new MutationObserver(() => {
    if (!state.spec) return;
    const r = state.spec.ratings[state.active];
    const el = r && widget(r.key);
    if (el && !el.classList.contains("msk-active")) highlight();
  });
  state.observer.observe(document.body, { childList: true, subtree: true });
}

export default function (component) {
  const { data } = component;
  if (!data) return;
  const fresh = !state.spec || state.spec.showing !== data.showing;
  state.spec = data;
  if (fresh) state.active = 0;
  requestAnimationFrame(() => { if (fresh) state.active = nextUnanswered(0); highlight(); });
}
