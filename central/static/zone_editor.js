// Zone editor (templates/zones.html): draw zones, lines with their crossing direction, lane arrows, signal
// boxes and ground points on the camera's live frame (mouse, pen and touch through pointer events), edit the
// camera's rules in forms built from the rule JSON schemas, push, and follow the node's answer live.
// Coordinates are normalized 0..1 like the config; the SVG overlay uses a 0..1000 view box over the image.
// Angles follow the config: degrees counter-clockwise from the right edge, with y pointing up on screen.
"use strict";

const boot = JSON.parse(document.getElementById("ze-boot").textContent);
const S = boot.strings;
const config = boot.config;
const cam = config.cameras.find((c) => c.id === boot.camera);
for (const key of ["zones", "lines", "signals", "rules"]) cam[key] = cam[key] || [];
const $ = (id) => document.getElementById(id);
// Writes carry the session's CSRF token (the JSON API checks it on top of the SameSite cookie).
const WRITE_HEADERS = { "X-CSRF-Token": boot.csrf };
const svg = $("ze-svg");
const NS = "http://www.w3.org/2000/svg";
let tool = "select";
let pending = []; // points of the shape being drawn
let selected = null; // {kind, index}
let drag = null; // {points, i}
const round = (v) => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;
const angle = (a, b) => Math.round(((Math.atan2(-(b[1] - a[1]), b[0] - a[0]) * 180) / Math.PI + 360) % 360);

function el(name, attrs, parent) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function html(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

function uniqueId(prefix) {
  const taken = new Set([...cam.zones, ...cam.lines, ...cam.signals].map((s) => s.id));
  let n = 1;
  while (taken.has(`${prefix}-${n}`)) n += 1;
  return `${prefix}-${n}`;
}

function toNorm(event) {
  const r = svg.getBoundingClientRect();
  return [round((event.clientX - r.left) / r.width), round((event.clientY - r.top) / r.height)];
}

const px = (p) => `${p[0] * 1000},${p[1] * 1000}`;

function arrow(from, degrees, length, cls, parent) {
  const rad = (degrees * Math.PI) / 180;
  const to = [from[0] + Math.cos(rad) * length, from[1] - Math.sin(rad) * length];
  const head = (d) => [to[0] - Math.cos(rad + d) * 0.02, to[1] + Math.sin(rad + d) * 0.02];
  el("polyline", { class: cls, points: [from, to, head(0.5), to, head(-0.5)].map(px).join(" ") }, parent);
}

function centroid(points) {
  const n = points.length;
  return [points.reduce((s, p) => s + p[0], 0) / n, points.reduce((s, p) => s + p[1], 0) / n];
}

function directionDegrees(d) {
  const named = { right: 0, "up-right": 45, up: 90, "up-left": 135, left: 180, "down-left": 225, down: 270, "down-right": 315 };
  return typeof d === "string" ? named[d] : d;
}

function handles(points, kind, index) {
  points.forEach((p, i) => {
    const h = el("circle", { class: "handle", cx: p[0] * 1000, cy: p[1] * 1000, r: 9 }, svg);
    h.addEventListener("pointerdown", (event) => {
      if (tool !== "select") return;
      event.stopPropagation();
      selected = { kind, index };
      drag = { points, i };
      svg.setPointerCapture(event.pointerId);
      draw();
    });
  });
}

function draw() {
  svg.replaceChildren();
  const isSel = (kind, i) => selected && selected.kind === kind && selected.index === i;
  cam.zones.forEach((z, i) => {
    el("polygon", { class: `zone${isSel("zones", i) ? " selected" : ""}`, points: z.polygon.map(px).join(" "), "data-id": z.id }, svg);
    const c = centroid(z.polygon);
    el("text", { class: "label", x: c[0] * 1000, y: c[1] * 1000 }, svg).textContent = z.id;
    if (z.direction !== undefined && z.direction !== null) arrow(c, directionDegrees(z.direction), 0.08, "arrow", svg);
    handles(z.polygon, "zones", i);
  });
  cam.lines.forEach((l, i) => {
    el("polyline", { class: `line${isSel("lines", i) ? " selected" : ""}`, points: l.points.map(px).join(" "), "data-id": l.id }, svg);
    arrow(centroid(l.points), directionDegrees(l.direction), 0.06, "arrow", svg);
    handles(l.points, "lines", i);
  });
  cam.signals.forEach((s, i) => {
    if (!s.roi) return;
    const [a, b] = s.roi;
    el("rect", { class: `signal${isSel("signals", i) ? " selected" : ""}`, x: a[0] * 1000, y: a[1] * 1000, width: (b[0] - a[0]) * 1000, height: (b[1] - a[1]) * 1000 }, svg);
    handles(s.roi, "signals", i);
  });
  if (cam.ground_plane) {
    cam.ground_plane.image.forEach((p, i) => {
      el("circle", { class: "ground", cx: p[0] * 1000, cy: p[1] * 1000, r: 7 }, svg);
      el("text", { class: "label", x: p[0] * 1000 + 10, y: p[1] * 1000 - 10 }, svg).textContent = `G${i + 1}`;
    });
    handles(cam.ground_plane.image, "ground", 0);
  }
  if (pending.length) {
    el("polyline", { class: "pending", points: pending.map(px).join(" ") }, svg);
    pending.forEach((p) => el("circle", { class: "handle", cx: p[0] * 1000, cy: p[1] * 1000, r: 6 }, svg));
  }
  (window.zePreview || []).forEach((shape) => svg.appendChild(shape));
  renderShapes();
}

// -- drawing -------------------------------------------------------------------------------------------------

function finishPolygon() {
  if (pending.length >= 3) {
    cam.zones.push({ id: uniqueId("zone"), polygon: pending });
    selected = { kind: "zones", index: cam.zones.length - 1 };
  }
  pending = [];
  $("ze-finish").hidden = tool !== "zone";
  draw();
  renderRules();
}

function addPoint(p) {
  pending.push(p);
  if (tool === "line" && pending.length === 3) {
    const [a, b, side] = pending;
    cam.lines.push({ id: uniqueId("line"), points: [a, b], direction: angle(centroid([a, b]), side) });
    selected = { kind: "lines", index: cam.lines.length - 1 };
    pending = [];
  } else if (tool === "lane" && pending.length === 2) {
    const zi = selected && selected.kind === "zones" ? selected.index : cam.zones.length - 1;
    if (zi >= 0) cam.zones[zi].direction = angle(pending[0], pending[1]);
    pending = [];
  } else if (tool === "signal" && pending.length === 2) {
    const [a, b] = pending;
    const roi = [[Math.min(a[0], b[0]), Math.min(a[1], b[1])], [Math.max(a[0], b[0]), Math.max(a[1], b[1])]];
    cam.signals.push({ source: "colour", id: uniqueId("signal"), roi });
    selected = { kind: "signals", index: cam.signals.length - 1 };
    pending = [];
  } else if (tool === "ground" && pending.length === 4) {
    const world = cam.ground_plane ? cam.ground_plane.world : [[0, 0], [3.5, 0], [3.5, 10], [0, 10]];
    cam.ground_plane = { image: pending, world };
    pending = [];
  }
  draw();
  renderRules();
}

svg.addEventListener("pointerdown", (event) => {
  if (tool === "select" || event.button > 0) return;
  event.preventDefault();
  const p = toNorm(event);
  if (tool === "zone" && pending.length >= 3) {
    const first = pending[0];
    if (Math.hypot(first[0] - p[0], first[1] - p[1]) < 0.015) return finishPolygon(); // closed on the first point
  }
  addPoint(p);
});
svg.addEventListener("pointermove", (event) => {
  if (!drag) return;
  drag.points[drag.i] = toNorm(event);
  draw();
});
const endDrag = () => {
  if (drag) renderShapes();
  drag = null;
};
svg.addEventListener("pointerup", endDrag);
svg.addEventListener("pointercancel", endDrag);
svg.addEventListener("dblclick", () => tool === "zone" && finishPolygon());

for (const button of document.querySelectorAll("#ze-tools [data-tool]")) {
  button.addEventListener("click", () => {
    tool = button.dataset.tool;
    pending = [];
    for (const b of document.querySelectorAll("#ze-tools [data-tool]")) b.setAttribute("aria-pressed", String(b === button));
    $("ze-finish").hidden = tool !== "zone";
    draw();
  });
}
$("ze-finish").addEventListener("click", finishPolygon);
$("ze-delete").addEventListener("click", () => {
  if (!selected) return;
  if (selected.kind === "ground") delete cam.ground_plane;
  else cam[selected.kind].splice(selected.index, 1);
  selected = null;
  draw();
  renderRules();
});

// -- shapes list: ids and numbers the mouse does not give --------------------------------------------------

function renderShapes() {
  const box = $("ze-shapes");
  box.replaceChildren();
  for (const kind of ["zones", "lines", "signals"]) {
    cam[kind].forEach((shape, i) => {
      const row = html("div", { class: "ze-shape", "data-kind": kind });
      const id = html("input", { "aria-label": `${S.id} ${kind}`, value: shape.id, size: 14 });
      id.addEventListener("change", () => { shape.id = id.value.trim(); draw(); renderRules(); });
      row.append(html("strong", {}, `${kind.slice(0, -1)} `), id);
      if (kind !== "signals") {
        const dir = html("input", { type: "number", min: -360, max: 360, step: 1, "aria-label": S.direction, placeholder: S.direction, value: shape.direction ?? "" });
        dir.addEventListener("change", () => {
          if (dir.value === "") delete shape.direction;
          else shape.direction = Number(dir.value);
          draw();
        });
        row.append(" ", dir);
      }
      row.addEventListener("click", () => { selected = { kind, index: i }; });
      box.appendChild(row);
    });
  }
  if (cam.ground_plane) {
    const row = html("div", { class: "ze-shape" });
    const world = html("textarea", { rows: 4, "aria-label": S.world_points });
    world.value = cam.ground_plane.world.map((p) => p.join(", ")).join("\n");
    world.addEventListener("change", () => {
      cam.ground_plane.world = world.value.trim().split("\n").map((l) => l.split(",").map(Number));
    });
    row.append(html("strong", {}, S.tool_ground), html("br"), html("label", {}, S.world_points), world);
    box.appendChild(row);
  }
}

// -- rules panel, built from the pydantic JSON schema of each rule type ------------------------------------

const schemas = boot.schemas.rules;
function resolve(prop, schema) {
  if (prop.$ref) return resolve(schema.$defs[prop.$ref.split("/").pop()], schema);
  if (prop.anyOf) {
    const real = prop.anyOf.filter((p) => p.type !== "null");
    if (real.length === 1) return { ...resolve(real[0], schema), description: prop.description, default: prop.default, nullable: true };
  }
  return prop;
}

function checkBounds(input, p) {
  const v = Number(input.value);
  if (input.value === "") return null;
  if (!Number.isFinite(v)) return "not a number";
  if (p.type === "integer" && !Number.isInteger(v)) return "must be a whole number";
  if (p.minimum !== undefined && v < p.minimum) return `must be ≥ ${p.minimum}`;
  if (p.exclusiveMinimum !== undefined && v <= p.exclusiveMinimum) return `must be > ${p.exclusiveMinimum}`;
  if (p.maximum !== undefined && v > p.maximum) return `must be ≤ ${p.maximum}`;
  if (p.exclusiveMaximum !== undefined && v >= p.exclusiveMaximum) return `must be < ${p.exclusiveMaximum}`;
  return null;
}

function setError(input, message) {
  const slot = input.parentElement.querySelector(".field-error");
  slot.textContent = message || "";
  input.setAttribute("aria-invalid", message ? "true" : "false");
}

function field(rule, name, p, schema, required) {
  const label = html("label", { "data-field": name });
  label.append(html("span", {}, name + (required ? " *" : "")));
  let input;
  const ids = [...cam.zones, ...cam.lines, ...cam.signals].map((s) => s.id);
  if (p.type === "number" || p.type === "integer") {
    input = html("input", { type: "number", step: p.type === "integer" ? 1 : "any", name });
    for (const k of ["minimum", "maximum"]) if (p[k] !== undefined) input.setAttribute(k.slice(0, 3), p[k]);
  } else if (p.type === "boolean") {
    input = html("input", { type: "checkbox", name });
    input.checked = rule[name] ?? p.default ?? false;
  } else if (p.enum) {
    input = html("select", { name });
    input.append(html("option", { value: "" }, ""), ...p.enum.map((v) => html("option", { value: v }, v)));
  } else if (p.type === "string" && ids.length && /^(zone|line|signal|entry|exit)/.test(name)) {
    input = html("select", { name });
    input.append(html("option", { value: "" }, ""), ...ids.map((v) => html("option", { value: v }, v)));
  } else if (p.type === "string") {
    input = html("input", { type: "text", name });
  } else if (p.type === "array" && p.items && resolve(p.items, schema).type === "string") {
    input = html("input", { type: "text", name, placeholder: (p.default || []).join(", ") });
  } else {
    input = html("textarea", { name, rows: 2, placeholder: JSON.stringify(p.default ?? null) });
  }
  if (p.type !== "boolean") {
    const value = rule[name];
    if (value !== undefined && value !== null) input.value = Array.isArray(value) && input.tagName === "INPUT" ? value.join(", ") : typeof value === "object" ? JSON.stringify(value) : value;
    if (value === undefined && p.default !== undefined && input.tagName === "INPUT" && !Array.isArray(p.default)) input.placeholder = p.default ?? "";
  }
  input.addEventListener("change", () => {
    let error = null;
    if (p.type === "boolean") rule[name] = input.checked;
    else if (input.value === "") delete rule[name];
    else if (p.type === "number" || p.type === "integer") {
      error = checkBounds(input, p);
      rule[name] = Number(input.value);
    } else if (input.tagName === "TEXTAREA") {
      try { rule[name] = JSON.parse(input.value); } catch (e) { error = "not valid JSON"; }
    } else if (p.type === "array") rule[name] = input.value.split(",").map((v) => v.trim()).filter(Boolean);
    else rule[name] = input.value;
    setError(input, error);
  });
  const help = (boot.field_help || {})[name] || p.description || "";
  label.append(input, html("small", { class: "help" }, help), html("span", { class: "field-error", role: "alert" }));
  return label;
}

function renderRules() {
  const box = $("ze-rules");
  box.replaceChildren();
  cam.rules.forEach((rule, i) => {
    const schema = schemas[rule.type];
    const card = html("fieldset", { class: "ze-rule", "data-rule": i });
    card.append(html("legend", {}, `${(boot.rule_names || {})[rule.type] || rule.type} · ${rule.id}`));
    if (schema.description) card.append(html("small", { class: "help" }, schema.description));
    const required = new Set(schema.required || []);
    for (const [name, raw] of Object.entries(schema.properties)) {
      if (name === "type") continue;
      card.append(field(rule, name, resolve(raw, schema), schema, required.has(name)));
    }
    const remove = html("button", { type: "button" }, S.remove);
    remove.addEventListener("click", () => { cam.rules.splice(i, 1); renderRules(); });
    card.append(remove);
    box.appendChild(card);
  });
}

const typeSelect = $("ze-rule-type");
typeSelect.append(...Object.keys(schemas).map((t) => html("option", { value: t }, (boot.rule_names || {})[t] || t)));
$("ze-add-rule").addEventListener("click", () => {
  const type = typeSelect.value;
  const rule = { id: `${type.replace(/_/g, "-")}-${cam.rules.length + 1}`, type };
  if ("zone" in schemas[type].properties && cam.zones.length) rule.zone = cam.zones[cam.zones.length - 1].id;
  if ("line" in schemas[type].properties && cam.lines.length) rule.line = cam.lines[cam.lines.length - 1].id;
  cam.rules.push(rule);
  renderRules();
});

// -- live frame ----------------------------------------------------------------------------------------------

async function snapshot() {
  const state = $("ze-snapshot-state");
  state.textContent = S.fetching_frame;
  const r = await fetch(`/api/v1/nodes/${encodeURIComponent(boot.node)}/commands`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...WRITE_HEADERS },
    body: JSON.stringify({ name: "snapshot", args: { cameras: [boot.camera] }, timeout_s: 30, wait_s: 30 }),
  });
  const body = await r.json();
  const shot = body.result && body.result.snapshots && body.result.snapshots[0];
  if (!r.ok || !shot) {
    state.textContent = `${S.frame_failed}: ${body.detail || body.reason || body.state}`;
    return;
  }
  const img = $("ze-image");
  img.onload = () => { img.hidden = false; state.textContent = `${shot.width}×${shot.height} · ${shot.captured_at}`; };
  img.src = `/nodes/${encodeURIComponent(boot.node)}/snapshots/${shot.sha256}`;
  img.dataset.sha256 = shot.sha256;
}
$("ze-snapshot").addEventListener("click", snapshot);

// -- push and the node's answer --------------------------------------------------------------------------

function showServerErrors(detail) {
  const list = $("ze-errors");
  list.replaceChildren();
  const camIndex = config.cameras.indexOf(cam);
  for (const line of String(detail).split("\n").slice(1).map((l) => l.trim()).filter(Boolean)) {
    list.append(html("li", {}, line));
    const m = line.match(/^cameras\.(\d+)\.rules\.(\d+)\.(?:[a-z_]+\.)?([a-z_]+)[.\w]*: (.*)$/);
    if (m && Number(m[1]) === camIndex) {
      const input = document.querySelector(`[data-rule="${m[2]}"] [data-field="${m[3]}"] [name="${m[3]}"]`);
      if (input) setError(input, m[4]);
    }
  }
  if (!list.children.length) list.append(html("li", {}, String(detail)));
}

async function follow(version) {
  const state = $("ze-push-state");
  for (let i = 0; i < 120; i += 1) {
    const r = await fetch(`/api/v1/nodes/${encodeURIComponent(boot.node)}`);
    const node = await r.json();
    if (node.desired_version !== version) return;
    if (node.config_state === "applied" || node.config_state === "failed") {
      state.className = `state-${node.config_state}`;
      state.textContent = `${S.node_answer}: ${S["state_" + node.config_state]} (v${version})${node.answer_error ? ": " + node.answer_error : ""}`;
      state.dataset.state = node.config_state;
      return;
    }
    state.textContent = `v${version}: ${S.state_pending}`;
    await new Promise((done) => setTimeout(done, 1000));
  }
}

$("ze-push").addEventListener("click", async () => {
  const state = $("ze-push-state");
  if (document.querySelector('#ze-rules [aria-invalid="true"]')) return;
  if (pending.length) finishPolygon();
  for (const input of document.querySelectorAll("#ze-rules [aria-invalid]")) setError(input, null);
  $("ze-errors").replaceChildren();
  state.className = "";
  state.dataset.state = "pushing";
  state.textContent = S.pushing;
  const body = { ...config };
  delete body.config_version;
  const r = await fetch(`/api/v1/nodes/${encodeURIComponent(boot.node)}/config`, {
    method: "PUT",
    headers: { "Content-Type": "application/json", ...WRITE_HEADERS },
    body: JSON.stringify(body),
  });
  const answer = await r.json();
  if (!r.ok) {
    state.className = "state-failed";
    state.dataset.state = "refused";
    state.textContent = S.push_refused;
    showServerErrors(answer.detail);
    return;
  }
  follow(answer.version);
});

// -- preview: replay a clip through the real pipeline on central ------------------------------------------

function showPreview(result) {
  const shapes = [];
  for (const track of result.tracks) {
    shapes.push(el("polyline", { class: "track", points: track.points.map(px).join(" ") }));
  }
  for (const event of result.events) {
    shapes.push(el("circle", { class: "event", cx: event.at[0] * 1000, cy: event.at[1] * 1000, r: 14 }));
  }
  window.zePreview = shapes;
  $("ze-preview-state").textContent = `${result.events.length} event(s): ${result.events.map((e) => `${e.type} (${e.zone_id})`).join(", ")} · ${result.tracks.length} track(s), ${result.seconds.toFixed(1)} s`;
  draw();
}

async function preview(request) {
  const state = $("ze-preview-state");
  state.textContent = S.previewing;
  const r = await fetch(`/api/v1/nodes/${encodeURIComponent(boot.node)}/${request.path}`, request.init);
  const result = await r.json();
  if (!r.ok) {
    state.textContent = String(result.detail);
    return;
  }
  showPreview(result);
}

$("ze-preview").addEventListener("click", () => {
  const file = $("ze-clip").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("clip", file);
  form.append("camera", JSON.stringify(cam));
  preview({ path: "preview", init: { method: "POST", body: form, headers: WRITE_HEADERS } });
});

$("ze-preview-recent").addEventListener("click", () => {
  const body = JSON.stringify({ camera: cam, seconds: 60 });
  const headers = { "Content-Type": "application/json", ...WRITE_HEADERS };
  preview({ path: "preview/recent", init: { method: "POST", body, headers } });
});

draw();
renderRules();
