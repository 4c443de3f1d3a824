// darkroom's playground: a page over darkroom's own public API, with the key kept in this
// browser only (localStorage) and sent only as the Authorization header of that API.

const $ = (id) => document.getElementById(id);
const KEY_STORE = "darkroom.key";
const TERMINAL = new Set(["complete", "error", "canceled"]);
const state = {
  key: "",
  models: [],
  tools: [],
  defaults: { generate: null, edit: null },
  mode: "generate", // or "edit"
  inputs: [], // the images to edit: { file, name, url, width, height }
  project: null,
  polling: 0,
  next: null,
  lang: "curl",
};

class ApiError extends Error {
  constructor(response, body) {
    super(body.message || body.error?.message || response.statusText || "request failed");
    this.status = response.status;
    this.retryAfter = response.headers.get("retry-after");
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response, data);
  return data;
}

// -- errors -------------------------------------------------------------------------------------

function explain(error) {
  switch (error.status) {
    case 401:
      return "This API key was not accepted (401). Check it and enter it again.";
    case 402:
      return `Not enough credits (402). ${error.message}`;
    case 403:
      return `Your tier may not do this (403). ${error.message}`;
    case 429:
      return `Too many requests (429). ${error.message} Try again in ${error.retryAfter || "a few"} seconds.`;
    default:
      return error.status ? `${error.message} (${error.status})` : `The server could not be reached: ${error.message}`;
  }
}

function showError(error) {
  const box = $("error");
  box.textContent = typeof error === "string" ? error : explain(error);
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// -- the key and the account --------------------------------------------------------------------

function keyFromFragment() {
  // The banner's link carries the key in the fragment, which the browser never sends.
  const params = new URLSearchParams(location.hash.slice(1));
  const key = params.get("key");
  if (key) {
    localStorage.setItem(KEY_STORE, key);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return key;
}

async function useKey(key) {
  state.key = key.trim();
  $("key").value = state.key;
  clearError();
  try {
    // The catalog lists every model, with whether this key's tier may use it (and why not).
    const [account, catalog] = await Promise.all([api("GET", "/v1/account"), api("GET", "/v1/catalog")]);
    localStorage.setItem(KEY_STORE, state.key);
    showAccount(account);
    state.models = catalog.models;
    state.tools = Object.keys(catalog.tools);
    state.defaults = { generate: catalog.default_model, edit: catalog.default_edit_model };
    fillForm();
    await Promise.all([loadHistory(true), loadUsage()]);
  } catch (error) {
    showError(error);
  }
}

function showAccount(account) {
  $("account").textContent = `${account.credits} credits · ${account.tier} tier`;
}

async function refreshAccount() {
  try {
    showAccount(await api("GET", "/v1/account"));
  } catch (error) {
    showError(error);
  }
}

// -- the form -----------------------------------------------------------------------------------

const MAX_ASSETS = 10; // images one edit may send (the published API's limit)
const EDIT_TYPES = new Set(["image/png", "image/jpeg", "image/webp", "image/avif", "image/bmp", "image/tiff"]);
const EXTENSIONS = { "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/avif": "avif", "image/bmp": "bmp", "image/tiff": "tiff" };

function option(value, text, disabled = false) {
  const item = document.createElement("option");
  item.value = value;
  item.textContent = text;
  item.disabled = disabled;
  return item;
}

function fillSelect(select, items, keep) {
  const previous = keep ? select.value : null;
  select.replaceChildren(...items);
  if (previous && items.some((o) => o.value === previous && !o.disabled)) select.value = previous;
}

function editing() {
  return state.mode === "edit";
}

function imagesText(count) {
  return `${count} ${count === 1 ? "image" : "images"}`;
}

function modelText(model) {
  const prices = Object.values(model.credits_per_image);
  const price = prices.length ? `from ${Math.min(...prices)} credits an image` : "";
  if (model.served === false) return `${model.title} — unavailable: ${model.unavailable_reason}`;
  if (model.available === false) return `${model.title} — not on your tier (${model.tiers.join(", ")})`;
  const takes = `up to ${imagesText(model.max_input_images)}`;
  return editing() ? `${model.title} — ${price.replace(" an image", "")}, ${takes}` : `${model.title} — ${price}`;
}

function modesModels() {
  return state.models.filter((m) => (editing() ? m.edits : m.generates !== false));
}

function fillForm() {
  const shown = modesModels();
  const models = shown.map((m) => option(m.id, modelText(m), m.available === false || m.served === false));
  fillSelect($("model"), models, true);
  const usable = shown.filter((m) => m.available !== false && m.served !== false);
  if ($("model").selectedOptions[0]?.disabled || !$("model").value) {
    const preferred = editing() ? state.defaults.edit : state.defaults.generate;
    const first = usable.find((m) => m.id === preferred) || usable[0];
    if (first) $("model").value = first.id;
  }
  fillSelect($("tool"), state.tools.map((t) => option(t, t.replaceAll("_", " "))), true);
  modelChanged();
}

function currentModel() {
  return state.models.find((m) => m.id === $("model").value);
}

function modelChanged() {
  const model = currentModel();
  if (!model) return;
  const ratios = Object.keys(model.sizes).map((r) => option(r, r));
  if (editing()) ratios.unshift(option("auto", "auto (as the first image)"));
  fillSelect($("aspect"), ratios, true);
  const resolutions = model.resolutions_for_tier || model.resolutions;
  fillSelect($("resolution"), resolutions.map((r) => option(r, r)), true);
  fillSelect($("count"), model.image_counts.map((n) => option(String(n), String(n))), true);
  if (editing()) {
    $("model-note").textContent = `${model.title} takes up to ${imagesText(model.max_input_images)}; the first one is the image edited.`;
  } else {
    $("model-note").textContent = model.edits ? `${model.title} also edits images: choose “Edit images” above.` : "";
  }
  inputsChanged();
}

function setMode(mode) {
  state.mode = mode;
  for (const radio of document.querySelectorAll("input[name=mode]")) radio.checked = radio.value === mode;
  $("inputs").hidden = !editing();
  $("tool-field").hidden = editing(); // the editor has no style tools
  fillForm();
  if (editing()) $("aspect").value = "auto"; // the editor's default: the first image's shape
  priceChanged();
}

function request() {
  const body = {
    image_count: Number($("count").value),
    model: $("model").value,
    aspect_ratio: $("aspect").value,
    resolution: $("resolution").value,
    style: { prompt: $("prompt").value.trim() },
  };
  if (!editing()) body.style.tool = $("tool").value;
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  return body;
}

function cost() {
  const model = currentModel();
  if (!model) return 0;
  return (model.credits_per_image[$("resolution").value] || 0) * Number($("count").value || 0);
}

function priceChanged() {
  const verb = editing() ? "Edit" : "Generate";
  $("generate").textContent = `${verb} (${cost()} credits)`;
  showSnippet();
}

// -- images to edit -----------------------------------------------------------------------------

function addImages(files) {
  clearError();
  const refused = [];
  for (const file of files) {
    if (!EDIT_TYPES.has(file.type)) refused.push(file.name);
    else if (state.inputs.length >= MAX_ASSETS) refused.push(file.name);
    else {
      const input = { file, name: file.name, url: URL.createObjectURL(file), width: 0, height: 0 };
      const probe = new Image(); // its size, for the OpenAI snippet's "auto"
      probe.addEventListener("load", () => {
        input.width = probe.naturalWidth;
        input.height = probe.naturalHeight;
        showSnippet();
      });
      probe.src = input.url;
      state.inputs.push(input);
    }
  }
  if (refused.length) {
    showError(`Not added: ${refused.join(", ")} (PNG, JPEG, WEBP, AVIF, BMP or TIFF images, at most ${MAX_ASSETS}).`);
  }
  inputsChanged();
}

function removeImage(index) {
  const [gone] = state.inputs.splice(index, 1);
  URL.revokeObjectURL(gone.url);
  inputsChanged();
}

function inputsChanged() {
  const items = state.inputs.map((input, i) => {
    const item = document.createElement("li");
    const thumb = document.createElement("img");
    thumb.src = input.url;
    thumb.alt = input.name;
    if (i === 0) thumb.classList.add("first");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove ${input.name}`);
    remove.addEventListener("click", () => removeImage(i));
    item.append(thumb, remove);
    return item;
  });
  $("chosen").replaceChildren(...items);
  const model = currentModel();
  const count = state.inputs.length;
  let note = "";
  let blocked = false;
  if (editing()) {
    if (!count) {
      note = "Add the image to edit (and any references).";
      blocked = true;
    } else if (model && count > model.max_input_images) {
      note = `${model.title} takes at most ${imagesText(model.max_input_images)}: remove ${count - model.max_input_images}.`;
      blocked = true;
    } else {
      note = `${imagesText(count)} chosen; the outlined one is edited.`;
    }
  }
  $("inputs-note").textContent = note;
  $("generate").disabled = blocked;
  priceChanged();
}

async function useFromHistory(project) {
  // The image is fetched by this page and uploaded like a chosen file.
  try {
    const response = await fetch(project.downloads[0].url);
    if (!response.ok) throw new Error(`the image answered ${response.status}`);
    const blob = await response.blob();
    const type = EDIT_TYPES.has(blob.type) ? blob.type : "image/png";
    const name = `${project.id}-1.${EXTENSIONS[type]}`;
    setMode("edit");
    addImages([new File([blob], name, { type })]);
    $("prompt").focus();
  } catch (error) {
    showError(`That image could not be used: ${error.message}`);
  }
}

async function upload() {
  // POST /v1/files/upload-urls, then a PUT of each file (no API key), as the SDK does it.
  const items = state.inputs.map((input) => ({ type: "image", extension: EXTENSIONS[input.file.type] || "png" }));
  const granted = await api("POST", "/v1/files/upload-urls", { items });
  await Promise.all(
    granted.items.map(async (item, i) => {
      const response = await fetch(item.upload_url, { method: "PUT", body: state.inputs[i].file });
      if (!response.ok) {
        const data = await response.json().catch(() => ({}));
        throw new ApiError(response, data);
      }
    }),
  );
  return granted.items.map((item) => item.file_path);
}

// -- a render -----------------------------------------------------------------------------------

async function generate(event) {
  event.preventDefault();
  clearError();
  if (!state.key) return showError("Enter your API key first.");
  const body = request();
  $("generate").disabled = true;
  try {
    let created;
    if (editing()) {
      $("status").textContent = `Uploading ${imagesText(state.inputs.length)}…`;
      body.assets = { image_file_paths: await upload() };
      created = await api("POST", "/v1/ai-image-editor", body);
    } else {
      created = await api("POST", "/v1/ai-image-generator", body);
    }
    $("results").replaceChildren();
    await refreshAccount();
    await follow(created.id, body.style.prompt);
  } catch (error) {
    showError(error);
    $("status").textContent = "";
  } finally {
    $("generate").disabled = false;
    inputsChanged();
  }
}

function describe(project) {
  if (project.status === "queued") {
    const place = project.queue_position ? `, position ${project.queue_position}` : "";
    const eta = project.eta_seconds != null ? `, about ${Math.round(project.eta_seconds)} s` : "";
    return `Queued${place}${eta}`;
  }
  if (project.status === "rendering") return `Rendering${project.status_reason ? `: ${project.status_reason}` : "…"}`;
  if (project.status === "complete") return `Complete: ${project.credits_charged} credits`;
  return project.status;
}

async function follow(id, prompt) {
  // The long poll: the server answers at each status change, so nothing polls every second.
  const run = ++state.polling;
  $("cancel").hidden = false;
  $("cancel").dataset.id = id;
  let project = await api("GET", `/v1/image-projects/${id}`);
  while (run === state.polling) {
    $("status").textContent = describe(project);
    if (TERMINAL.has(project.status)) break;
    const since = encodeURIComponent(project.status);
    project = await api("GET", `/v1/image-projects/${id}?wait=30&since=${since}`);
  }
  $("cancel").hidden = true;
  if (run !== state.polling) return;
  if (project.status === "complete") {
    showImages(project, prompt);
  } else if (project.status === "error") {
    const error = project.error || {};
    showError(`The render failed (${error.code}): ${error.message} Its credits were refunded.`);
    $("status").textContent = "Failed: refunded";
  }
  await Promise.all([refreshAccount(), loadHistory(true), loadUsage()]);
}

async function cancel() {
  const id = $("cancel").dataset.id;
  clearError();
  try {
    const before = await api("GET", `/v1/image-projects/${id}`);
    const project = await api("POST", `/v1/image-projects/${id}/cancel`);
    state.polling += 1; // stop following it
    $("cancel").hidden = true;
    $("status").textContent = `Canceled: ${before.credits_charged} credits refunded`;
    if (project.status !== "canceled") $("status").textContent = describe(project);
    await Promise.all([refreshAccount(), loadHistory(true), loadUsage()]);
  } catch (error) {
    showError(error);
  }
}

function showImages(project, prompt) {
  const figures = project.downloads.map((download, i) => {
    const figure = document.createElement("figure");
    const image = document.createElement("img");
    image.src = download.url;
    image.alt = prompt;
    image.width = project.width;
    image.height = project.height;
    const caption = document.createElement("figcaption");
    const link = document.createElement("a");
    link.href = download.url;
    link.download = `${project.id}-${i + 1}`;
    link.textContent = `Download image ${i + 1}`;
    const larger = document.createElement("button");
    larger.type = "button";
    larger.textContent = `Larger view of image ${i + 1}`;
    larger.addEventListener("click", () => view(download.url, prompt));
    caption.append(link, larger);
    figure.append(image, caption);
    return figure;
  });
  $("results").replaceChildren(...figures);
}

function view(url, prompt) {
  $("viewer-image").src = url;
  $("viewer-image").alt = prompt;
  $("viewer").showModal();
}

// -- history ------------------------------------------------------------------------------------

async function loadHistory(fresh) {
  const params = new URLSearchParams({ limit: "12" });
  if (!fresh && state.next) params.set("before", state.next);
  const page = await api("GET", `/v1/image-projects?${params}`);
  const items = page.data.map(historyItem);
  if (fresh) $("history").replaceChildren(...items);
  else $("history").append(...items);
  state.next = page.next_before;
  $("more").hidden = !page.has_more;
}

function historyItem(project) {
  const item = document.createElement("li");
  if (project.downloads.length) {
    const thumb = document.createElement("img");
    thumb.src = project.downloads[0].url;
    thumb.alt = project.prompt;
    thumb.loading = "lazy";
    item.append(thumb);
  }
  const text = document.createElement("span");
  text.className = "prompt";
  text.textContent = project.prompt;
  const meta = document.createElement("span");
  meta.className = "meta";
  const when = new Date(project.created_at).toLocaleString();
  meta.textContent = `${project.model} · ${project.status} · ${project.credits_charged} credits · ${when}`;
  const buttons = document.createElement("div");
  buttons.className = "buttons";
  if (project.downloads.length) {
    const reuse = document.createElement("button");
    reuse.type = "button";
    reuse.textContent = "Edit";
    reuse.setAttribute("aria-label", `Edit the image of "${project.prompt}"`);
    reuse.addEventListener("click", () => useFromHistory(project));
    buttons.append(reuse);
  }
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = "Delete";
  remove.setAttribute("aria-label", `Delete "${project.prompt}"`);
  remove.addEventListener("click", async () => {
    try {
      await api("DELETE", `/v1/image-projects/${project.id}`);
      item.remove();
      await refreshAccount();
    } catch (error) {
      showError(error);
    }
  });
  buttons.append(remove);
  item.append(text, meta, buttons);
  return item;
}

// -- usage --------------------------------------------------------------------------------------

const DAYS = 30;
const DAY_MS = 86400 * 1000;
const COLOURS = ["#c2410c", "#2563eb", "#059669", "#7c3aed", "#db2777", "#ca8a04", "#0891b2"];

function dayOf(date) {
  return date.toISOString().slice(0, 10); // UTC days, as the ledger's times are
}

async function loadUsage() {
  const from = new Date(Date.now() - (DAYS - 1) * DAY_MS);
  from.setUTCHours(0, 0, 0, 0);
  const report = await api("GET", `/v1/account/usage?from=${encodeURIComponent(from.toISOString())}&limit=1000`);
  const days = new Map(); // "YYYY-MM-DD" -> Map(model -> credits spent, net of refunds)
  for (const entry of report.entries) {
    if (entry.kind !== "charge" && entry.kind !== "refund") continue;
    const day = entry.created_at.slice(0, 10);
    const models = days.get(day) || new Map();
    models.set(entry.model, (models.get(entry.model) || 0) - entry.amount);
    days.set(day, models);
  }
  const models = [...new Set([...days.values()].flatMap((m) => [...m.keys()]))].sort();
  const figure = document.createElement("div");
  figure.append(chart(days, models, from), legend(models));
  $("usage").replaceChildren(figure, usageTable(report.models));
}

function niceTop(value) {
  // The scale's top: 1, 2 or 5 times a power of ten, at least the largest bar.
  const power = 10 ** Math.floor(Math.log10(Math.max(value, 1)));
  return [1, 2, 5, 10].map((m) => m * power).find((top) => top >= value);
}

function svgElement(name, attributes, text) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

function chart(days, models, from) {
  const width = 640;
  const height = 220;
  const left = 48;
  const right = 8;
  const top = 12;
  const bottom = 40;
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;
  const slots = [...Array(DAYS).keys()].map((i) => dayOf(new Date(from.getTime() + i * DAY_MS)));
  const spent = (day) => [...(days.get(day)?.values() || [])].reduce((a, b) => a + Math.max(b, 0), 0);
  const scale = niceTop(Math.max(0, ...slots.map(spent)));
  const svg = svgElement("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" });
  const used = slots.filter((d) => spent(d) > 0);
  svg.setAttribute(
    "aria-label",
    `Credits spent per day and model, ${slots[0]} to ${slots[DAYS - 1]}: ${used.map((d) => `${d} ${spent(d)}`).join(", ") || "none"}`,
  );
  // The credit scale, with gridlines: steps of whole credits where the top allows.
  const steps = [5, 4, 2, 1].find((n) => scale % n === 0) || 4;
  for (let step = 0; step <= steps; step += 1) {
    const value = (scale * step) / steps;
    const y = top + plotHeight - (value / scale) * plotHeight;
    svg.append(svgElement("line", { x1: left, x2: width - right, y1: y, y2: y, class: "gridline" }));
    svg.append(svgElement("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, Number.isInteger(value) ? value : value.toFixed(1)));
  }
  svg.append(svgElement("text", { x: 12, y: top + plotHeight / 2, transform: `rotate(-90 12 ${top + plotHeight / 2})`, "text-anchor": "middle" }, "credits"));
  // The bars: one a day, stacked by model.
  const slot = plotWidth / DAYS;
  slots.forEach((day, i) => {
    let y = top + plotHeight;
    for (const model of models) {
      const credits = days.get(day)?.get(model) || 0;
      if (credits <= 0) continue;
      const h = (credits / scale) * plotHeight;
      const bar = svgElement("rect", { x: left + i * slot + 1, y: y - h, width: slot - 2, height: h, fill: COLOURS[models.indexOf(model) % COLOURS.length] });
      bar.append(svgElement("title", {}, `${day} · ${model}: ${credits} credits`));
      svg.append(bar);
      y -= h;
    }
  });
  // The day axis: today named, and every seventh day before it.
  svg.append(svgElement("line", { x1: left, x2: width - right, y1: top + plotHeight, y2: top + plotHeight, class: "axis" }));
  svg.append(svgElement("line", { x1: left, x2: left, y1: top, y2: top + plotHeight, class: "axis" }));
  const label = (day) => new Date(`${day}T00:00:00Z`).toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
  slots.forEach((day, i) => {
    if ((DAYS - 1 - i) % 7 !== 0) return;
    const x = left + i * slot + slot / 2;
    svg.append(svgElement("line", { x1: x, x2: x, y1: top + plotHeight, y2: top + plotHeight + 4, class: "axis" }));
    svg.append(svgElement("text", { x, y: top + plotHeight + 17, "text-anchor": "middle" }, label(day)));
  });
  svg.append(svgElement("text", { x: left + plotWidth / 2, y: height - 4, "text-anchor": "middle" }, "day (UTC)"));
  return svg;
}

function legend(models) {
  const list = document.createElement("ul");
  list.className = "legend";
  list.setAttribute("aria-label", "Models");
  if (!models.length) {
    const none = document.createElement("li");
    none.textContent = "No credits spent in these 30 days.";
    list.append(none);
  }
  models.forEach((model, i) => {
    const item = document.createElement("li");
    const swatch = svgElement("svg", { width: 12, height: 12, "aria-hidden": "true" });
    swatch.append(svgElement("rect", { width: 12, height: 12, fill: COLOURS[i % COLOURS.length] }));
    item.append(swatch, model);
    list.append(item);
  });
  return list;
}

function usageTable(models) {
  const table = document.createElement("table");
  table.createCaption().textContent = "Per model, these 30 days";
  const head = table.createTHead().insertRow();
  for (const name of ["Model", "Projects", "Images", "Credits"]) {
    const cell = document.createElement("th");
    cell.textContent = name;
    if (name !== "Model") cell.className = "number";
    head.append(cell);
  }
  const body = table.createTBody();
  for (const [model, figures] of Object.entries(models)) {
    const row = body.insertRow();
    for (const value of [model, figures.projects, figures.images, figures.net]) {
      const cell = row.insertCell();
      cell.textContent = String(value);
      if (value !== model) cell.className = "number";
    }
  }
  return table;
}

// -- copy as code -------------------------------------------------------------------------------

const LANGUAGES = { curl: "curl", magic_hour: "Python (magic_hour)", darkroom: "Python (darkroom)", openai: "Python (openai)" };
// darkroom's own SDK has the published SDK's image generator, not (yet) its editor.
const EDIT_LANGUAGES = ["curl", "magic_hour", "openai"];

function py(value) {
  return JSON.stringify(value).replaceAll("true", "True").replaceAll("false", "False").replaceAll("null", "None");
}

function shell(text) {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

function fileNames() {
  return state.inputs.length ? state.inputs.map((input) => input.name) : ["photo.png"];
}

function outputSize(body) {
  // The size of the images asked for: the catalog's, or for "auto" the first image's shape.
  const model = currentModel();
  if (body.aspect_ratio !== "auto") return model?.sizes[body.aspect_ratio]?.[body.resolution];
  const first = state.inputs[0];
  const edge = { "640px": 640, "1k": 1024, "2k": 2048, "4k": 4096 }[body.resolution];
  if (!first?.width || !edge) return null;
  const long = Math.max(first.width, first.height);
  const short = Math.min(edge, Math.max(256, Math.round((edge * Math.min(first.width, first.height)) / long / 16) * 16));
  return first.width >= first.height ? [edge, short] : [short, edge];
}

function snippet(lang) {
  const body = request();
  const origin = location.origin;
  const auth = `-H "Authorization: Bearer $DARKROOM_API_KEY" -H 'Content-Type: application/json'`;
  if (lang === "curl" && editing()) {
    return [
      "# Upload each image (an upload URL, then a PUT of the file), then ask for the edit.",
      "paths=()",
      `for file in ${fileNames().map(shell).join(" ")}; do`,
      `  ext=$(printf '%s' "\${file##*.}" | tr A-Z a-z)`,
      `  granted=$(curl -s ${origin}/v1/files/upload-urls ${auth} \\`,
      `    -d "{\\"items\\": [{\\"type\\": \\"image\\", \\"extension\\": \\"$ext\\"}]}")`,
      `  read -r url path < <(printf '%s' "$granted" | python3 -c 'import json, sys; i = json.load(sys.stdin)["items"][0]; print(i["upload_url"], i["file_path"])')`,
      `  curl -sf -X PUT --data-binary "@$file" "$url" && paths+=("\\"$path\\"")`,
      "done",
      `curl -s ${origin}/v1/ai-image-editor ${auth} \\`,
      `  -d ${shell(JSON.stringify(body).slice(0, -1) + ', "assets": {"image_file_paths": [')}"$(IFS=,; echo "\${paths[*]}")"']}}'`,
    ].join("\n");
  }
  if (lang === "curl") {
    return `curl -s ${origin}/v1/ai-image-generator \\\n  ${auth} \\\n  -d ${shell(JSON.stringify(body))}`;
  }
  if (lang === "magic_hour" || lang === "darkroom") {
    const from = lang === "magic_hour" ? "magic_hour" : "darkroom";
    const fields = editing() ? { assets: { image_file_paths: fileNames() }, ...body } : body;
    const args = Object.entries(fields)
      .map(([name, value]) => `    ${name}=${py(value)},`)
      .join("\n");
    const call = editing() ? "ai_image_editor" : "ai_image_generator";
    return `import os\nfrom ${from} import Client\n\nclient = Client(token=os.environ["DARKROOM_API_KEY"], base_url="${origin}")\nresult = client.v1.${call}.generate(\n${args}\n    download_directory=".",\n)\nprint(result.status, result.downloaded_paths)`;
  }
  const size = outputSize(body);
  const sizeArg = size ? `\n    size="${size[0]}x${size[1]}",` : "";
  const head = `import os\nfrom openai import OpenAI\n\nclient = OpenAI(api_key=os.environ["DARKROOM_API_KEY"], base_url="${origin}/v1")\n`;
  if (editing()) {
    const images = fileNames().map((name) => `open(${py(name)}, "rb")`).join(", ");
    return `${head}image = client.images.edit(\n    image=[${images}],\n    model=${py(body.model)},\n    prompt=${py(body.style.prompt)},\n    n=${body.image_count},${sizeArg}\n)\nprint(image.data[0].url)`;
  }
  return `${head}image = client.images.generate(\n    model=${py(body.model)},\n    prompt=${py(body.style.prompt)},\n    n=${body.image_count},${sizeArg}\n)\nprint(image.data[0].url)`;
}

function showSnippet() {
  buildTabs();
  $("snippet").textContent = snippet(state.lang);
}

function buildTabs() {
  const tabs = document.querySelector(".tabs");
  const languages = Object.keys(LANGUAGES).filter((lang) => !editing() || EDIT_LANGUAGES.includes(lang));
  if (!languages.includes(state.lang)) state.lang = languages[0];
  if ([...tabs.children].map((tab) => tab.dataset.lang).join() === languages.join()) {
    for (const tab of tabs.children) tab.setAttribute("aria-selected", String(tab.dataset.lang === state.lang));
    return;
  }
  tabs.replaceChildren(
    ...languages.map((lang) => {
      const tab = document.createElement("button");
      tab.type = "button";
      tab.setAttribute("role", "tab");
      tab.textContent = LANGUAGES[lang];
      tab.dataset.lang = lang;
      tab.setAttribute("aria-selected", String(lang === state.lang));
      tab.addEventListener("click", () => {
        state.lang = lang;
        showSnippet();
      });
      return tab;
    }),
  );
}

async function copySnippet() {
  const text = $("snippet").textContent;
  try {
    await navigator.clipboard.writeText(text);
    $("copy").textContent = "Copied";
  } catch {
    const range = document.createRange();
    range.selectNodeContents($("snippet"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    $("copy").textContent = "Selected: press Ctrl+C";
  }
}

// -- wiring -------------------------------------------------------------------------------------

function dropZone() {
  const zone = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
  }
  for (const name of ["dragleave", "drop"]) zone.addEventListener(name, () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    addImages([...(event.dataTransfer?.files || [])]);
  });
  $("files").addEventListener("change", () => {
    addImages([...$("files").files]);
    $("files").value = ""; // the same file can be chosen again
  });
}

function start() {
  buildTabs();
  dropZone();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    useKey($("key").value);
  });
  $("generate-form").addEventListener("submit", generate);
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.addEventListener("change", () => setMode(radio.value));
  }
  $("model").addEventListener("change", modelChanged);
  for (const id of ["resolution", "count", "aspect", "tool", "seed", "prompt"]) {
    $(id).addEventListener("input", priceChanged);
  }
  $("cancel").addEventListener("click", cancel);
  $("more").addEventListener("click", () => loadHistory(false).catch(showError));
  $("copy").addEventListener("click", copySnippet);
  const key = keyFromFragment() || localStorage.getItem(KEY_STORE);
  if (key) useKey(key);
  else $("key").focus();
}

start();
