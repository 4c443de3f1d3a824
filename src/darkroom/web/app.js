// darkroom's playground: a page over darkroom's own public API, with the key kept in this
// browser only (localStorage) and sent only as the Authorization header of that API.

const $ = (id) => document.getElementById(id);
const KEY_STORE = "darkroom.key";
const TERMINAL = new Set(["complete", "error", "canceled"]);
const state = { key: "", models: [], tools: [], project: null, polling: 0, next: null, lang: "curl" };

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
    fillForm(catalog.default_model);
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

function modelText(model) {
  const prices = Object.values(model.credits_per_image);
  const price = prices.length ? `from ${Math.min(...prices)} credits an image` : "";
  if (model.served === false) return `${model.title} — unavailable: ${model.unavailable_reason}`;
  if (model.available === false) return `${model.title} — not on your tier (${model.tiers.join(", ")})`;
  return `${model.title} — ${price}`;
}

function fillForm(defaultModel) {
  const models = state.models.map((m) =>
    option(m.id, modelText(m), m.available === false || m.served === false),
  );
  fillSelect($("model"), models, true);
  const usable = state.models.filter((m) => m.available !== false && m.served !== false);
  if ($("model").selectedOptions[0]?.disabled || !$("model").value) {
    const first = usable.find((m) => m.id === defaultModel) || usable[0];
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
  const ratios = Object.keys(model.sizes);
  fillSelect($("aspect"), ratios.map((r) => option(r, r)), true);
  const resolutions = model.resolutions_for_tier || model.resolutions;
  fillSelect($("resolution"), resolutions.map((r) => option(r, r)), true);
  fillSelect($("count"), model.image_counts.map((n) => option(String(n), String(n))), true);
  $("model-note").textContent = model.edits ? `${model.title} can also edit images.` : "";
  priceChanged();
}

function request() {
  const body = {
    image_count: Number($("count").value),
    model: $("model").value,
    aspect_ratio: $("aspect").value,
    resolution: $("resolution").value,
    style: { prompt: $("prompt").value.trim(), tool: $("tool").value },
  };
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  return body;
}

function cost() {
  const model = currentModel();
  if (!model) return 0;
  return (model.credits_per_image[$("resolution").value] || 0) * Number($("count").value || 0);
}

function priceChanged() {
  $("generate").textContent = `Generate (${cost()} credits)`;
  showSnippet();
}

// -- a render -----------------------------------------------------------------------------------

async function generate(event) {
  event.preventDefault();
  clearError();
  if (!state.key) return showError("Enter your API key first.");
  const body = request();
  $("generate").disabled = true;
  try {
    const created = await api("POST", "/v1/ai-image-generator", body);
    $("results").replaceChildren();
    await refreshAccount();
    await follow(created.id, body.style.prompt);
  } catch (error) {
    showError(error);
  } finally {
    $("generate").disabled = false;
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
    caption.append(link, " ", larger);
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
  const params = new URLSearchParams({ limit: "10" });
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
  const when = new Date(project.created_at).toLocaleString();
  text.textContent = `${project.prompt} — ${project.model}, ${project.status}, ${project.credits_charged} credits, ${when}`;
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
  item.append(text, remove);
  return item;
}

// -- usage --------------------------------------------------------------------------------------

async function loadUsage() {
  const from = new Date(Date.now() - 30 * 86400 * 1000).toISOString();
  const report = await api("GET", `/v1/account/usage?from=${encodeURIComponent(from)}&limit=1000`);
  const days = new Map(); // "YYYY-MM-DD" -> Map(model -> credits)
  for (const entry of report.entries) {
    if (entry.kind !== "charge" && entry.kind !== "refund") continue;
    const day = entry.created_at.slice(0, 10);
    const models = days.get(day) || new Map();
    models.set(entry.model, (models.get(entry.model) || 0) - entry.amount);
    days.set(day, models);
  }
  $("usage").replaceChildren(chart(days), usageTable(report.models));
}

const COLOURS = ["#c2410c", "#2563eb", "#059669", "#7c3aed", "#db2777", "#ca8a04", "#0891b2"];

function chart(days) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const width = 600;
  const height = 160;
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 20}`);
  svg.setAttribute("role", "img");
  const sorted = [...days.keys()].sort();
  const total = (day) => [...days.get(day).values()].reduce((a, b) => a + Math.max(b, 0), 0);
  const top = Math.max(1, ...sorted.map(total));
  const models = [...new Set(sorted.flatMap((d) => [...days.get(d).keys()]))];
  svg.setAttribute("aria-label", `Credits per day and model: ${sorted.map((d) => `${d} ${total(d)}`).join(", ") || "none yet"}`);
  const bar = width / 30;
  const start = Date.now() - 29 * 86400 * 1000;
  for (const day of sorted) {
    const index = Math.round((Date.parse(day) - Date.parse(new Date(start).toISOString().slice(0, 10))) / 86400000);
    let y = height;
    for (const [model, credits] of days.get(day)) {
      if (credits <= 0) continue;
      const h = (credits / top) * (height - 10);
      const rect = document.createElementNS(ns, "rect");
      rect.setAttribute("x", String(index * bar + 1));
      rect.setAttribute("y", String(y - h));
      rect.setAttribute("width", String(bar - 2));
      rect.setAttribute("height", String(h));
      rect.setAttribute("fill", COLOURS[models.indexOf(model) % COLOURS.length]);
      const title = document.createElementNS(ns, "title");
      title.textContent = `${day} ${model}: ${credits} credits`;
      rect.append(title);
      svg.append(rect);
      y -= h;
    }
  }
  models.forEach((model, i) => {
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", String(i * 100));
    label.setAttribute("y", String(height + 15));
    label.setAttribute("fill", COLOURS[i % COLOURS.length]);
    label.textContent = model;
    svg.append(label);
  });
  return svg;
}

function usageTable(models) {
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  for (const name of ["Model", "Projects", "Images", "Credits"]) {
    const cell = document.createElement("th");
    cell.textContent = name;
    head.append(cell);
  }
  const body = table.createTBody();
  for (const [model, figures] of Object.entries(models)) {
    const row = body.insertRow();
    for (const value of [model, figures.projects, figures.images, figures.net]) {
      row.insertCell().textContent = String(value);
    }
  }
  return table;
}

// -- copy as code -------------------------------------------------------------------------------

const LANGUAGES = { curl: "curl", magic_hour: "Python (magic_hour)", darkroom: "Python (darkroom)", openai: "Python (openai)" };

function py(value) {
  return JSON.stringify(value).replaceAll("true", "True").replaceAll("false", "False").replaceAll("null", "None");
}

function snippet(lang) {
  const body = request();
  const origin = location.origin;
  if (lang === "curl") {
    const json = JSON.stringify(body).replaceAll("'", "'\\''");
    return `curl -s ${origin}/v1/ai-image-generator \\\n  -H "Authorization: Bearer $DARKROOM_API_KEY" -H 'Content-Type: application/json' \\\n  -d '${json}'`;
  }
  const args = Object.entries(body)
    .map(([name, value]) => `    ${name}=${py(value)},`)
    .join("\n");
  if (lang === "magic_hour" || lang === "darkroom") {
    const from = lang === "magic_hour" ? "magic_hour" : "darkroom";
    return `import os\nfrom ${from} import Client\n\nclient = Client(token=os.environ["DARKROOM_API_KEY"], base_url="${origin}")\nresult = client.v1.ai_image_generator.generate(\n${args}\n    download_directory=".",\n)\nprint(result.status, result.downloaded_paths)`;
  }
  const model = currentModel();
  const size = model?.sizes[body.aspect_ratio]?.[body.resolution];
  const sizeArg = size ? `\n    size="${size[0]}x${size[1]}",` : "";
  return `import os\nfrom openai import OpenAI\n\nclient = OpenAI(api_key=os.environ["DARKROOM_API_KEY"], base_url="${origin}/v1")\nimage = client.images.generate(\n    model=${py(body.model)},\n    prompt=${py(body.style.prompt)},\n    n=${body.image_count},${sizeArg}\n)\nprint(image.data[0].url)`;
}

function showSnippet() {
  $("snippet").textContent = snippet(state.lang);
}

function buildTabs() {
  const tabs = document.querySelector(".tabs");
  for (const [lang, label] of Object.entries(LANGUAGES)) {
    const tab = document.createElement("button");
    tab.type = "button";
    tab.setAttribute("role", "tab");
    tab.textContent = label;
    tab.dataset.lang = lang;
    tab.setAttribute("aria-selected", String(lang === state.lang));
    tab.addEventListener("click", () => {
      state.lang = lang;
      for (const other of tabs.children) other.setAttribute("aria-selected", String(other === tab));
      showSnippet();
    });
    tabs.append(tab);
  }
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

function start() {
  buildTabs();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    useKey($("key").value);
  });
  $("generate-form").addEventListener("submit", generate);
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
