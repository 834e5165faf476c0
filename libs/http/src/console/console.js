// The jetsource console: plain JavaScript modules, no build step, no request outside this
// server. Every page reads the HTTP API (docs/contracts/http.md) with the credentials given;
// the aggregate types, commands and views come from /openapi.json, which the registry writes.

const main = document.getElementById("main");
const state = { token: sessionStorage.getItem("jetsource.token") || "", spec: null, config: {}, timers: [] };

// ---------- helpers ----------
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function credentials() {
  if (!state.token) return {};
  return state.token.split(".").length === 3 ? { Authorization: `Bearer ${state.token}` } : { "X-Api-Key": state.token };
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...credentials(), ...(options.headers || {}) } });
  const text = await response.text();
  let body = text;
  try { body = JSON.parse(text); } catch { /* text */ }
  if (!response.ok) {
    const error = new Error(typeof body === "object" ? `${body.code}: ${body.detail}` : `${response.status} ${text}`);
    error.status = response.status;
    error.body = body;
    throw error;
  }
  return body;
}

function failure(error) {
  return h("p", { class: "error", role: "alert" }, error.message || String(error));
}

function pretty(value) {
  return h("pre", {}, JSON.stringify(value, null, 2));
}

function statusText(text) {
  return h("span", { class: `status-${text}` }, text);
}

function traceLink(traceId) {
  if (!traceId) return "";
  const template = state.config.trace_url;
  // Only a W3C trace id is put into the trace UI's URL: 32 lower-case hex digits.
  if (!template || !/^[0-9a-f]{32}$/.test(traceId)) return h("code", {}, traceId);
  return h("a", { href: template.replace("{trace_id}", () => encodeURIComponent(traceId)), rel: "noreferrer" }, traceId);
}

/** The query string that authenticates an EventSource (which cannot send headers). */
function streamCredentials() {
  if (!state.token) return "";
  const name = state.token.split(".").length === 3 ? "access_token" : "api_key";
  return `?${name}=${encodeURIComponent(state.token)}`;
}

/** A function that tells whether a reply is still the latest asked for. */
function latest() {
  let asked = 0;
  return () => { const mine = ++asked; return () => mine === asked; };
}

function table(columns, rows) {
  return h("div", { class: "scroll" },
    h("table", {},
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, row.map((cell) => h("td", {}, cell)))))));
}

function every(ms, fn) {
  fn();
  state.timers.push(setInterval(fn, ms));
}

// The registry, as the OpenAPI document shows it.
function aggregateTypes() {
  const types = new Set();
  for (const path of Object.keys(state.spec?.paths || {})) {
    const m = path.match(/^\/v1\/commands\/([^/{]+)\/\{id\}\//);
    if (m) types.add(m[1]);
  }
  return [...types];
}


// ---------- pages ----------
async function overview() {
  const root = h("section", { "aria-labelledby": "overview-title" }, h("h2", { id: "overview-title" }, "Overview"));
  const summary = h("div", { class: "cards" });
  const services = h("div");
  const views = h("div");
  const charts = h("div", { class: "cards" });
  root.append(summary, h("h3", {}, "Commands per second, since this page opened"), charts, h("h3", {}, "Services"), services, h("h3", {}, "Views"), views);
  main.replaceChildren(root);
  const series = { total: [], failed: [] };
  let previous = null;
  const spark = (values, label) => {
    const max = Math.max(1, ...values);
    const points = values.map((v, i) => `${(i / 59) * 100},${48 - (v / max) * 44}`).join(" ");
    return h("div", { class: "card" }, h("h3", {}, label),
      h("div", { class: "big" }, values.length ? values[values.length - 1].toFixed(1) : "–"),
      h("span", { class: "muted" }, `max ${max.toFixed(1)}/s`),
      svg(points, label));
  };
  every(2000, async () => {
    try {
      const status = await api("/status");
      summary.replaceChildren(
        h("div", { class: "card" }, h("h3", {}, "Status"), h("div", { class: "big" }, statusText(status.status)),
          status.missing?.length ? h("span", { class: "error" }, `missing: ${status.missing.join(", ")}`) : h("span", { class: "muted" }, "every service answers")),
        h("div", { class: "card" }, h("h3", {}, "NATS"), h("div", { class: "big" }, status.nats?.connected ? "connected" : "disconnected"),
          h("span", { class: "muted" }, `server ${status.nats?.server} · ${status.nats?.version} · JetStream ${status.nats?.jetstream}`)),
        status.archive ? h("div", { class: "card" }, h("h3", {}, "Archive lag"), h("div", { class: "big" }, status.archive.lag),
          h("span", { class: "muted" }, `hot ${status.archive.hot.messages} · archived ${status.archive.archived.messages} messages`)) : "");
      const names = Object.keys(status.services || {}).sort();
      services.replaceChildren(table(["service", "instances", "ids", "version"], names.map((name) => {
        const instances = status.services[name];
        return [h("strong", {}, name), instances.length, h("span", { class: "mono" }, instances.map((i) => i.instance).join(", ")), [...new Set(instances.map((i) => i.version))].join(", ")];
      })));
      views.replaceChildren(table(["view", "version", "applied seq", "lag", "parked", "rebuilding"], (status.views || []).map((v) =>
        [h("a", { href: `#/views/${v.view}` }, v.view), v.version, v.applied_seq, v.lag, v.parked ? h("span", { class: "status-failed" }, v.parked) : 0, v.rebuilding ? `v${v.rebuilding.version}` : "–"])));
      const totals = parseCommands(await fetchText("/metrics"));
      if (previous) {
        series.total.push(Math.max(0, (totals.total - previous.total) / 2));
        series.failed.push(Math.max(0, (totals.failed - previous.failed) / 2));
        for (const s of Object.values(series)) if (s.length > 60) s.shift();
      }
      previous = totals;
      charts.replaceChildren(spark(series.total, "commands/s"), spark(series.failed, "failed commands/s"));
    } catch (error) {
      summary.replaceChildren(failure(error));
    }
  });
}

function svg(points, label) {
  const ns = "http://www.w3.org/2000/svg";
  const node = document.createElementNS(ns, "svg");
  node.setAttribute("class", "spark");
  node.setAttribute("viewBox", "0 0 100 48");
  node.setAttribute("preserveAspectRatio", "none");
  node.setAttribute("role", "img");
  node.setAttribute("aria-label", label);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points);
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#1f5fbf");
  line.setAttribute("stroke-width", "1.5");
  line.setAttribute("vector-effect", "non-scaling-stroke");
  node.append(line);
  return node;
}

async function fetchText(path) {
  const response = await fetch(path, { headers: credentials() });
  return response.text();
}

/** Sums `<app>_commands_total` by outcome: failures are codes other than succeeded/accepted. */
function parseCommands(text) {
  let total = 0;
  let failed = 0;
  for (const line of text.split("\n")) {
    const m = line.match(/^\w+_commands_total\{([^}]*)\} ([0-9.e+]+)/);
    if (!m) continue;
    const value = Number(m[2]);
    total += value;
    const code = (m[1].match(/code="([^"]*)"/) || [])[1];
    if (code !== "succeeded" && code !== "accepted") failed += value;
  }
  return { total, failed };
}

async function aggregates(type, id) {
  const types = aggregateTypes();
  const root = h("section", { "aria-labelledby": "agg-title" }, h("h2", { id: "agg-title" }, "Aggregates"));
  const typeSelect = h("select", { id: "agg-type", name: "type" }, types.map((t) => h("option", { value: t, selected: t === type }, t)));
  const idInput = h("input", { id: "agg-id", name: "id", value: id || "", required: true, placeholder: "bolt@main", list: "agg-ids" });
  const ids = h("datalist", { id: "agg-ids" });
  const form = h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); location.hash = `#/aggregates/${typeSelect.value}/${encodeURIComponent(idInput.value.trim())}`; } },
    h("label", { for: "agg-type" }, "Type", typeSelect), h("label", { for: "agg-id" }, "Id", idInput), ids, h("button", { type: "submit" }, "Show"));
  root.append(form);
  main.replaceChildren(root);
  suggestIds(typeSelect.value, ids);
  typeSelect.addEventListener("change", () => suggestIds(typeSelect.value, ids));
  idInput.addEventListener("input", () => suggestIds(typeSelect.value, ids, idInput.value.trim()));
  if (!type || !id) return;
  try {
    const [now, history] = await Promise.all([
      api(`/v1/aggregates/${type}/${encodeURIComponent(id)}`),
      api(`/v1/aggregates/${type}/${encodeURIComponent(id)}/events?limit=1000`),
    ]);
    const events = history.events || [];
    const at = h("div");
    const versions = Math.max(1, now.version);
    const slider = h("input", { type: "range", id: "version", min: 1, max: versions, value: versions, "aria-valuetext": `version ${versions}` });
    const from = h("input", { type: "number", id: "diff-from", min: 0, max: versions, value: Math.max(0, versions - 1) });
    const to = h("input", { type: "number", id: "diff-to", min: 0, max: versions, value: versions });
    const diff = h("div");
    const newest = latest();
    const showAt = async () => {
      const current = newest();
      const version = slider.value;
      slider.setAttribute("aria-valuetext", `version ${version}`);
      try {
        const then = await api(`/v1/aggregates/${type}/${encodeURIComponent(id)}?version=${version}`);
        if (current()) at.replaceChildren(h("p", {}, `State at version ${version}`), pretty(then.state));
      } catch (e) { if (current()) at.replaceChildren(failure(e)); }
    };
    const showDiff = async () => {
      try {
        const state = async (v) => Number(v) === 0 ? {} : (await api(`/v1/aggregates/${type}/${encodeURIComponent(id)}?version=${v}`)).state;
        diff.replaceChildren(renderDiff(await state(from.value), await state(to.value)));
      } catch (e) { diff.replaceChildren(failure(e)); }
    };
    slider.addEventListener("input", showAt);
    const when = h("input", { type: "datetime-local", id: "at-time", step: "1" });
    const showTime = async () => {
      if (!when.value) return;
      const at = new Date(when.value).toISOString();
      try {
        const then = await api(`/v1/aggregates/${type}/${encodeURIComponent(id)}?at=${encodeURIComponent(at)}`);
        atTime.replaceChildren(h("p", {}, `State at ${at}: version ${then.version}`), pretty(then.state));
      } catch (e) { atTime.replaceChildren(failure(e)); }
    };
    const atTime = h("div");
    root.append(
      h("div", { class: "cards" },
        h("div", { class: "card" }, h("h3", {}, "Version"), h("div", { class: "big" }, now.version)),
        h("div", { class: "card" }, h("h3", {}, "Stream sequence"), h("div", { class: "big" }, now.stream_seq)),
        h("div", { class: "card" }, h("h3", {}, "Exists"), h("div", { class: "big" }, now.exists ? "yes" : "no"))),
      h("h3", {}, "Time travel"),
      h("label", { for: "version" }, "Version ", slider),
      at,
      h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); showTime(); } },
        h("label", { for: "at-time" }, "Or as it was at (your local time)", when), h("button", { type: "submit", class: "secondary" }, "Show")),
      atTime,
      h("h3", {}, "Difference between versions"),
      h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); showDiff(); } },
        h("label", { for: "diff-from" }, "From", from), h("label", { for: "diff-to" }, "To", to), h("button", { type: "submit", class: "secondary" }, "Compare")),
      diff,
      h("h3", {}, `History (${events.length} events, CloudEvents)`),
      table(["version", "seq", "type", "time", "command", "trace", "data"], events.map((e) => [
        e.aggregateversion, e.streamseq, e.type, h("span", { class: "mono" }, e.time),
        h("a", { href: `#/commands/${e.commandid}`, class: "mono" }, e.commandid),
        traceLink((e.traceparent || "").split("-")[1]),
        h("pre", {}, JSON.stringify(e.data))])));
    showAt();
    showDiff();
  } catch (error) {
    root.append(failure(error));
  }
}

const suggestion = latest();
let suggestTimer = null;
function suggestIds(type, list, prefix = "") {
  clearTimeout(suggestTimer);
  const current = suggestion();
  suggestTimer = setTimeout(async () => {
    try {
      const page = await api(`/v1/aggregates/${type}?limit=200${prefix ? `&prefix=${encodeURIComponent(prefix)}` : ""}`);
      if (current()) list.replaceChildren(...page.ids.map((id) => h("option", { value: id })));
    } catch { /* suggestions are optional */ }
  }, 250);
}

function renderDiff(before, after) {
  const rows = [];
  const walk = (a, b, path) => {
    if (JSON.stringify(a) === JSON.stringify(b)) return;
    if (a && b && typeof a === "object" && typeof b === "object" && !Array.isArray(a) && !Array.isArray(b)) {
      for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) walk(a[key], b[key], path ? `${path}.${key}` : key);
      return;
    }
    rows.push([h("code", {}, path || "(state)"), h("span", { class: "diff-del mono" }, a === undefined ? "–" : JSON.stringify(a)), h("span", { class: "diff-add mono" }, b === undefined ? "–" : JSON.stringify(b))]);
  };
  walk(before, after, "");
  return rows.length ? table(["field", "before", "after"], rows) : h("p", { class: "muted" }, "No difference.");
}

async function commands(id) {
  const generation = state.generation;
  const root = h("section", { "aria-labelledby": "cmd-title" }, h("h2", { id: "cmd-title" }, "Commands"));
  const input = h("input", { id: "command-id", value: id || "", required: true, size: 40, placeholder: "command id" });
  root.append(h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); location.hash = `#/commands/${encodeURIComponent(input.value.trim())}`; } },
    h("label", { for: "command-id" }, "Command id", input), h("button", { type: "submit" }, "Look up")));
  const tail = h("ol", { class: "timeline", "aria-label": "Live tail" });
  main.replaceChildren(root);
  if (!id) {
    const live = h("div", { id: "tail" });
    root.append(h("h3", {}, "Live tail: every event as it is stored"), live);
    const rows = [];
    const source = new EventSource(`/v1/tail${streamCredentials()}`);
    source.onerror = () => live.replaceChildren(failure(new Error("the live tail is not streaming (reconnecting; check the credentials)")), ...(rows.length ? [table(["seq", "type", "aggregate", "version", "command", "time"], rows)] : []));
    source.addEventListener("event", (m) => {
      const e = JSON.parse(m.data);
      const [, kind, aggregateId] = (e.subject || "").split(".");
      const where = kind === "view"
        ? h("a", { href: `#/views/${encodeURIComponent(aggregateId || "")}` }, `view ${aggregateId || ""}`)
        : h("a", { href: `#/aggregates/${kind}/${encodeURIComponent(aggregateId || "")}`, class: "mono" }, `${kind} ${aggregateId || ""}`);
      rows.unshift([e.seq, h("span", { class: "tail-type" }, e.type), where,
        e.aggregateversion ?? "", e.commandid ? h("a", { href: `#/commands/${encodeURIComponent(e.commandid)}`, class: "mono" }, e.commandid) : "", h("span", { class: "mono" }, e.time || "")]);
      rows.length = Math.min(rows.length, 100);
      live.replaceChildren(table(["seq", "type", "aggregate", "version", "command", "time"], rows));
    });
    state.timers.push({ close: () => source.close() });
    live.append(h("p", { class: "muted" }, "Waiting for events…"));
  }
  if (id) {
    try {
      const doc = await api(`/v1/commands/${encodeURIComponent(id)}`);
      const steps = [h("li", {}, h("strong", {}, "accepted"), " ", h("span", { class: "muted mono" }, doc.at || ""))];
      for (const e of doc.errors || []) steps.push(h("li", { class: "bad" }, h("strong", {}, `error from ${e.service}`), ": ", e.reason ? h("code", {}, e.reason) : "", " ", e.message, " ", h("span", { class: "muted mono" }, e.at)));
      steps.push(h("li", { class: doc.status === "failed" ? "bad" : "" }, h("strong", {}, statusText(doc.status))));
      root.append(
        h("div", { class: "cards" },
          h("div", { class: "card" }, h("h3", {}, "Status"), h("div", { class: "big", id: "command-status" }, statusText(doc.status))),
          h("div", { class: "card" }, h("h3", {}, "Aggregate"), h("a", { href: `#/aggregates/${doc.aggregate_type}/${encodeURIComponent(doc.aggregate_id)}` }, `${doc.aggregate_type} ${doc.aggregate_id}`)),
          h("div", { class: "card" }, h("h3", {}, "Trace"), traceLink(doc.trace_id))),
        h("h3", {}, "Timeline"), h("ol", { class: "timeline" }, steps),
        h("h3", {}, "Events"), table(["seq", "type", "version", "aggregate"], (doc.events || []).map((e) => [e.seq, e.type, e.version, e.aggregate || `${doc.aggregate_type}/${doc.aggregate_id}`])),
        ...((doc.errors || []).length ? [h("h3", {}, "Errors"), table(["service", "code", "reason", "message", "trace"], doc.errors.map((e) => [e.service, e.code, h("code", { class: "reason" }, e.reason || ""), e.message, traceLink(e.trace_id)]))] : []),
        h("h3", {}, "Notifications (live)"), tail);
      if (generation !== state.generation) return; // the user went elsewhere meanwhile
      const source = new EventSource(`/v1/commands/${encodeURIComponent(id)}/events${streamCredentials()}`);
      source.onmessage = (m) => tail.append(h("li", {}, h("span", { class: "mono" }, m.data)));
      source.addEventListener("status", (m) => {
        let update = {};
        try { update = JSON.parse(m.data); } catch { /* shown raw */ }
        const errors = (update.errors || []).length;
        tail.append(h("li", { class: update.status === "failed" ? "bad" : "" }, "status ", statusText(update.status || m.data),
          errors ? ` · ${errors} error${errors > 1 ? "s" : ""}` : "", " ", h("span", { class: "muted mono" }, update.at || "")));
      });
      source.addEventListener("notification", (m) => {
        let note = {};
        try { note = JSON.parse(m.data); } catch { /* shown raw */ }
        tail.append(h("li", { class: note.status === "failed" ? "bad" : "" }, "notification ", statusText(note.status || "?"), " ",
          note.reason ? h("code", {}, note.reason) : "", " ", note.message || ""));
      });
      source.addEventListener("end", () => source.close());
      state.timers.push({ close: () => source.close() });
    } catch (error) {
      root.append(failure(error));
    }
  }
}

async function views(name, prefix) {
  const root = h("section", { "aria-labelledby": "views-title" }, h("h2", { id: "views-title" }, "Views"));
  const list = h("div");
  const parked = h("div");
  root.append(list, parked);
  main.replaceChildren(root);
  const message = h("p", { role: "status" });
  every(2000, async () => {
    // A keyboard user's focus stays where it is: no refresh while it is inside the table.
    if (list.contains(document.activeElement) && document.activeElement !== document.body) return;
    try {
      const { views } = await api("/v1/projections");
      list.replaceChildren(table(["view", "version", "documents", "applied seq", "lag", "parked", "rebuilding", "operate"], views.map((v) => [
        h("a", { href: `#/views/${v.view}` }, v.view), v.version, v.documents ?? "–", v.applied_seq, v.lag, v.parked,
        v.rebuilding ? `v${v.rebuilding.version}: ${JSON.stringify(v.rebuilding)}` : "–",
        h("span", {},
          h("button", { type: "button", class: "secondary", "aria-label": `Rebuild ${v.view}`, onclick: () => operate(v.view, "rebuild", message) }, "Rebuild"), " ",
          h("button", { type: "button", class: "secondary", "aria-label": `Retry parked events of ${v.view}`, disabled: !v.parked, onclick: () => operate(v.view, "retry", message) }, "Retry parked"))])), message);
      const rows = [];
      for (const v of views.filter((v) => v.parked)) {
        for (const record of (await api(`/v1/projections/${v.view}/parked`)).parked) {
          rows.push([v.view, h("span", { class: "mono" }, record.subject), record.seqs.join(", "), h("span", { class: "parked-reason" }, record.reason),
            record.command_id ? h("a", { href: `#/commands/${encodeURIComponent(record.command_id)}`, class: "mono" }, record.command_id) : "–", h("span", { class: "mono" }, record.at)]);
        }
      }
      parked.replaceChildren(...(rows.length ? [h("h3", {}, "Parked events"), table(["view", "aggregate", "stream seqs", "reason", "command", "parked at"], rows)] : []));
    } catch (error) {
      list.replaceChildren(failure(error));
    }
  });
  if (!name) return;
  const input = h("input", { id: "prefix", value: prefix || "", placeholder: "key prefix" });
  const docs = h("div");
  root.append(h("h3", {}, `Documents of ${name}`),
    h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); location.hash = `#/views/${name}/${encodeURIComponent(input.value)}`; } },
      h("label", { for: "prefix" }, "Prefix", input), h("button", { type: "submit" }, "Browse")), docs);
  try {
    const page = await api(`/v1/views/${name}?limit=50${prefix ? `&prefix=${encodeURIComponent(prefix)}` : ""}`);
    docs.replaceChildren(...(page.items || []).map((item) => pretty(item)), page.items?.length ? "" : h("p", { class: "muted" }, "No documents."));
  } catch (error) {
    docs.replaceChildren(failure(error));
  }
}

async function operate(view, action, message) {
  try {
    const answer = await api(`/v1/projections/${view}/${action}`, { method: "POST" });
    message.replaceChildren(`${action} of ${view}: ${JSON.stringify(answer)}`);
  } catch (error) {
    message.replaceChildren(failure(error));
  }
}

async function logs() {
  const root = h("section", { "aria-labelledby": "logs-title" }, h("h2", { id: "logs-title" }, "Logs"));
  const service = h("input", { id: "log-service", placeholder: "any" });
  const level = h("select", { id: "log-level" }, ["warn", "error", "info", "debug", "trace"].map((l) => h("option", { value: l }, l)));
  const trace = h("input", { id: "log-trace", placeholder: "32 hex digits", size: 34 });
  const out = h("div");
  const load = async () => {
    const query = new URLSearchParams({ level: level.value, limit: "200" });
    if (service.value.trim()) query.set("service", service.value.trim());
    if (trace.value.trim()) query.set("trace_id", trace.value.trim());
    try {
      const answer = await api(`/v1/logs?${query}`);
      const records = answer.records || answer.items || [];
      out.replaceChildren(table(["time", "service", "level", "message", "trace"], records.map((r) => [h("span", { class: "mono" }, r.time || r.timestamp || ""), r.service, statusText(String(r.level || "").toLowerCase()), r.message || r.fields?.message || "", traceLink(r.trace_id)])));
    } catch (error) {
      out.replaceChildren(failure(error));
    }
  };
  root.append(h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); load(); } },
    h("label", { for: "log-service" }, "Service", service), h("label", { for: "log-level" }, "Lowest level", level),
    h("label", { for: "log-trace" }, "Trace id", trace), h("button", { type: "submit" }, "Show")), out);
  main.replaceChildren(root);
  load();
}

// ---------- routing ----------
async function render() {
  for (const timer of state.timers) typeof timer === "object" && timer.close ? timer.close() : clearInterval(timer);
  state.timers = [];
  state.generation = (state.generation || 0) + 1;
  let parts;
  try {
    parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  } catch {
    parts = ["overview"];
  }
  const [page = "overview", ...rest] = parts;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#/${page}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const pages = { overview, aggregates, commands, views, logs };
  document.title = `${page} · jetsource console`;
  await (pages[page] || overview)(...rest);
}

async function start() {
  document.querySelector(".skip").addEventListener("click", (e) => { e.preventDefault(); main.focus(); });
  const form = document.getElementById("credentials");
  const token = document.getElementById("token");
  token.value = state.token;
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = token.value.trim();
    sessionStorage.setItem("jetsource.token", state.token);
    render();
  });
  try { state.config = await api("/console/config.json"); } catch { state.config = {}; }
  try { state.spec = await api("/openapi.json"); } catch { state.spec = null; }
  document.getElementById("app-name").textContent = (state.spec?.info?.title || "").replace(/^jetsource\s*/, "");
  window.addEventListener("hashchange", render);
  await render();
}

start();
