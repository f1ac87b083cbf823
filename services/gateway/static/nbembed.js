// nbembed host SDK (ES module). Mount a session's notebook into a page and
// make the page's own Save button Jupyter's save:
//
//   import { mount } from "https://gateway.example.com/sdk/nbembed.js";
//   const embed = mount(document.getElementById("notebook"), {
//     gatewayUrl: "https://gateway.example.com",
//     sessionId, iframeUrl, browserToken,   // from your backend's POST /v1/sessions
//     restricted,                           // the session's `restricted` field
//     notebookOrigin,                       // the ready session's notebook_origin
//   });
//   embed.addEventListener("ready", (e) => enableRun());       // the user can type and run
//   embed.addEventListener("kernel", (e) => show(e.detail.status)); // starting|idle|busy|dead
//   embed.addEventListener("dirty", (e) => markUnsaved(e.detail.dirty));
//   embed.addEventListener("stored", (e) => console.log(e.detail.revision, e.detail.changed));
//   embed.addEventListener("error", (e) => console.warn(e.detail.code)); // see the README
//   embed.addEventListener("ended", (e) => reopen(e.detail.code));  // see below
//   await embed.save();   // resolves once the revision is durable
//   await embed.reload(); // after your backend restored a revision: Jupyter reads it
//
// Read-only views and diffs of stored revisions (no Jupyter server):
//
//   mountView(element, { html });   // the page your backend got from GET …/view
//   mountView(element, { src });    // or a route of your backend that serves it
//   const d = await fetchDiff({ gatewayUrl, notebookId, from: 3, to: 5, token });
//   describeDiff(d.diff);           // ["cell 2: source, outputs changed", …]
//
// The SDK follows the session (a long-poll with the browser token) and emits
// "ended" once it is over: its server was culled, stopped or crashed
// (`code` server-culled / server-stopped / server-crashed), the host ended it,
// or its notebook was deleted. The notebook in the iframe no longer works
// then: ask your backend for a new session on the same notebook_id.
//
// Messages with the notebook travel with postMessage under the protocol name
// below; the page only listens to its own iframe's window at the notebook's
// origin and only ever posts to that origin.

export const PROTOCOL = "nbembed.v1";

/** A failure of the SDK, with a machine-readable `code`. */
export class NbembedError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "NbembedError";
    this.code = code;
  }
}

// Popups opened from the notebook stay sandboxed like it (no
// allow-popups-to-escape-sandbox): nothing in the iframe opens an unsandboxed
// window. Downloads are allowed only when the session is not restricted.
const SANDBOX = "allow-scripts allow-same-origin allow-forms allow-modals allow-popups";

/** The iframe's sandbox for a session; `restricted` is the session resource's field. */
export function sandboxFor(restricted) {
  return restricted === false ? `${SANDBOX} allow-downloads` : SANDBOX;
}

/**
 * Put a session's notebook into `element` and return its Embed.
 * @param {HTMLElement} element
 * @param {import("./nbembed").MountOptions} options
 */
export function mount(element, options) {
  return new Embed(element, options);
}

/** The kernel statuses the bridge reports (see the README's events). */
export const KERNEL_STATUSES = ["starting", "idle", "busy", "dead"];

/** Why the hub refused the iframe's login ticket (its refusal page tells the SDK). */
const REFUSAL_CODES = ["ticket-expired", "ticket-used", "ended"];

export class Embed extends EventTarget {
  constructor(element, options) {
    super();
    for (const name of ["gatewayUrl", "sessionId", "iframeUrl", "browserToken"]) {
      if (!options || !options[name]) throw new NbembedError("bad-options", `${name} is required`);
    }
    this.options = { saveTimeoutMs: 30000, storeTimeoutMs: 60000, helloTimeoutMs: 30000, ...options };
    // The notebook's own origin: the user's origin when each user's server has
    // one (the iframe URL is the hub's, which redirects there), else the hub's.
    this.notebookOrigin = options.notebookOrigin || new URL(options.iframeUrl).origin;
    // The hub's login page, which tells why it refused a ticket, is on the iframe URL's origin.
    this._loginOrigin = new URL(options.iframeUrl).origin;
    this.ready = false;
    /** The kernel's status once the bridge said (see KERNEL_STATUSES), else null. */
    this.kernel = null;
    /** Whether the notebook has changes Jupyter has not saved. */
    this.dirty = false;
    /** Set once the session is over: { status, code, reason }. */
    this.ended = null;
    /** Set once the embed cannot work (frame refused, ticket refused, session over). */
    this.failure = null;
    this._pending = new Map();
    this._following = new AbortController();
    // Aborts the gateway calls of saves in flight when the embed fails or is destroyed.
    this._stopping = new AbortController();
    this._hello = new Promise((resolve, reject) => {
      this._helloed = resolve;
      this._refused = reject;
    });
    this._hello.catch(() => {}); // a failure is reported as an event; nobody need await this
    this.iframe = document.createElement("iframe");
    this.iframe.src = options.iframeUrl;
    this.iframe.title = options.title || "Jupyter notebook";
    // A session not known to be unrestricted gets the stricter sandbox.
    this.restricted = options.restricted !== false;
    this.iframe.setAttribute("sandbox", sandboxFor(options.restricted));
    this.iframe.setAttribute("allow", "clipboard-read; clipboard-write; fullscreen");
    this.iframe.style.cssText = "width:100%;height:100%;border:0";
    this._onMessage = (event) => this._receive(event);
    window.addEventListener("message", this._onMessage);
    // No hello from the bridge in time: the notebook's server refused to be framed
    // by this page (its origin is not one of the tenant's), or it never loaded.
    this._helloTimer = setTimeout(
      () =>
        this._fail(
          "frame-refused",
          "the notebook did not answer: is this page's origin one of the tenant's allowed origins?",
        ),
      this.options.helloTimeoutMs,
    );
    element.replaceChildren(this.iframe);
    if (this.options.followSession !== false) this._follow();
  }

  /**
   * Save the notebook as the user sees it and store it as a revision.
   * Resolves with { saveId, revision, changed } once the revision is durable;
   * rejects with an NbembedError: at once with the embed's failure code
   * ("ended", "frame-refused", "ticket-expired", "ticket-used") when it cannot
   * work, else "timeout", "jupyter", "store" or "gateway".
   */
  async save() {
    const jupyter = await this._ask("save", "save");
    this._emit("saved", { ...jupyter, byUser: false });
    const stored = await this._store(jupyter.lastModified);
    this._emit("stored", { ...stored, byUser: false });
    return stored;
  }

  /**
   * Have Jupyter read the notebook's file again, e.g. after your backend restored
   * a revision (POST /v1/notebooks/{id}/revisions/{n}/restore writes it into the
   * open session's file). Unsaved edits in the page are dropped; no "file changed
   * on disk" dialog follows. Resolves with { path, lastModified }.
   */
  async reload() {
    const done = await this._ask("reload", "reload");
    this._emit("reloaded", done);
    return done;
  }

  /** Remove the iframe and stop listening. */
  destroy() {
    this._following.abort();
    this._stopping.abort();
    clearTimeout(this._helloTimer);
    window.removeEventListener("message", this._onMessage);
    this._rejectPending(new NbembedError("destroyed", "the embed was destroyed"));
    this._refused(new NbembedError("destroyed", "the embed was destroyed"));
    this.iframe.remove();
  }

  /** Ask the bridge (once it said hello) and wait for its answer; fails fast once failed. */
  async _ask(type, what) {
    if (this.failure) throw this.failure;
    await this._hello; // rejects with the failure if the frame is refused meanwhile
    if (this.failure) throw this.failure;
    const requestId = crypto.randomUUID();
    const answered = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(requestId);
        // Jupyter can stall a save behind an "overwrite?" dialog (file changed on disk).
        reject(new NbembedError("timeout", `Jupyter did not confirm the ${what} in time`));
      }, this.options.saveTimeoutMs);
      this._pending.set(requestId, { resolve, reject, timer });
    });
    this._post({ type, requestId });
    return answered;
  }

  /**
   * Follow the session until it is over, then emit "ended" with its code and reason;
   * meanwhile reload the notebook whenever a restore rewrote its file.
   * One long-poll at a time (`status=ready&restore_id=…` waits until either changes);
   * the first ask does not wait: it learns the last restore already in the file
   * Jupyter is opening. On errors it waits a little longer each time, so a gateway
   * outage is never hammered.
   */
  async _follow() {
    const base = this.options.gatewayUrl.replace(/\/$/, "");
    const headers = { Authorization: `Bearer ${this.options.browserToken}` };
    const signal = this._following.signal;
    let known = "ready";
    let restoreId = null;
    let pause = 1000;
    while (!signal.aborted) {
      let session = null;
      try {
        const wait = restoreId === null ? "" : `?wait=25&status=${known}&restore_id=${restoreId}`;
        const url = `${base}/v1/sessions/${this.options.sessionId}${wait}`;
        const answer = await fetch(url, { headers, signal });
        if (answer.status === 404 || answer.status === 401) return; // not ours to follow
        if (answer.ok) session = await answer.json();
      } catch (_) {
        if (signal.aborted) return;
      }
      if (session === null) {
        await new Promise((resolve) => setTimeout(resolve, pause));
        pause = Math.min(pause * 2, 30000);
        continue;
      }
      pause = 1000;
      known = session.status;
      // Only a ready session's answer tells its restores (a gateway older than this SDK
      // tells none: nothing is learnt from it, and nothing reloaded).
      if (known === "ready" && typeof session.restore_id === "string") {
        if (restoreId !== null && session.restore_id !== restoreId) {
          this._reloadRestored(session.restored_revision);
        }
        restoreId = session.restore_id;
      } else if (restoreId === null) {
        restoreId = "";
      }
      if (known === "ended" || known === "failed") {
        const failure = session.failure || {};
        this._end({
          status: known,
          code: known === "ended" ? session.end_code : failure.code,
          reason: (known === "ended" ? session.end_reason : failure.reason) || known,
        });
        return;
      }
    }
  }

  /** A restore rewrote the notebook's file: have Jupyter read it (no dialog at the next save). */
  async _reloadRestored(revision) {
    try {
      // Jupyter can reload only an open notebook (a restore during the page's load).
      if (!this.ready) await new Promise((resolve) => this.addEventListener("ready", resolve, { once: true }));
      const done = await this._ask("reload", "reload");
      this._emit("reloaded", { ...done, restoredRevision: revision });
    } catch (error) {
      // A failed embed and Jupyter's refusal told the page already; a timeout did not.
      if (!this.failure && error.code === "timeout") this._emit("error", { code: error.code, error });
    }
  }

  _end(detail) {
    if (this.ended) return;
    this.ended = detail;
    this._emit("ended", detail);
    this._fail("ended", `the session ended: ${detail.reason}`);
  }

  /** The embed cannot work any more: reject what waits, stop the gateway calls, tell the page. */
  _fail(code, message) {
    if (this.failure) return;
    const error = new NbembedError(code, message);
    this.failure = error;
    clearTimeout(this._helloTimer);
    this._refused(error);
    this._rejectPending(error);
    this._stopping.abort();
    this._emit("error", { code, error });
  }

  _rejectPending(error) {
    for (const { reject, timer } of this._pending.values()) {
      clearTimeout(timer);
      reject(error);
    }
    this._pending.clear();
  }

  /** A gateway call of this embed's session, with its browser token; aborted when it fails. */
  async _gateway(path, init = {}) {
    const base = this.options.gatewayUrl.replace(/\/$/, "");
    const headers = { Authorization: `Bearer ${this.options.browserToken}`, ...(init.headers || {}) };
    try {
      return await fetch(`${base}${path}`, { ...init, headers, signal: this._stopping.signal });
    } catch (error) {
      if (this.failure) throw this.failure;
      throw new NbembedError("gateway", `the gateway did not answer: ${error}`);
    }
  }

  /**
   * Store the save Jupyter just made (the page's): one save with the server's
   * own report of it, named by the file's timestamp, so `changed` tells the truth.
   */
  async _store(lastModified) {
    const session = `/v1/sessions/${this.options.sessionId}`;
    const created = await this._gateway(`${session}/saves`, {
      method: "POST",
      ...(lastModified
        ? {
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ last_modified: lastModified }),
          }
        : {}),
    });
    if (created.status !== 202) throw await this._problem(created);
    const save = await created.json();
    if (lastModified) return this._outcome(lastModified, save);
    const deadline = Date.now() + this.options.storeTimeoutMs;
    let current = save;
    while (current.status === "pending") {
      if (Date.now() > deadline) throw this._notStored(current);
      const polled = await this._gateway(`/v1/saves/${save.id}?wait=25`);
      if (!polled.ok) throw await this._problem(polled);
      current = await polled.json();
    }
    return this._result(current);
  }

  /**
   * The outcome of the save Jupyter made at `lastModified` (GET /v1/sessions/{id}/saves):
   * it appears once the server or the SDK reported it, then waits for its revision.
   */
  async _outcome(lastModified, current = null) {
    const deadline = Date.now() + this.options.storeTimeoutMs;
    const query = `last_modified=${encodeURIComponent(lastModified)}&wait=25`;
    while (current === null || current.status === "pending") {
      if (Date.now() > deadline) throw this._notStored(current);
      const polled = await this._gateway(`/v1/sessions/${this.options.sessionId}/saves?${query}`);
      if (polled.ok) current = await polled.json();
      else if (polled.status !== 404) throw await this._problem(polled);
    }
    return this._result(current);
  }

  /** The timeout of a save: which one, and whether it was ever reported (for the logs). */
  _notStored(current) {
    const where = current === null ? "never reported by the server" : `save ${current.id} still pending`;
    return new NbembedError("timeout", `the save was not stored in time (${where})`);
  }

  _result(current) {
    if (current.status !== "stored") {
      const reason = current.failure ? current.failure.reason : "the save was not stored";
      throw new NbembedError("store", reason);
    }
    return { saveId: current.id, revision: current.revision, changed: current.changed };
  }

  /** A save made inside Jupyter (Ctrl-S, autosave): the server reported it; tell its revision. */
  async _storedByUser(lastModified) {
    try {
      const stored = await this._outcome(lastModified);
      this._emit("stored", { ...stored, byUser: true });
    } catch (error) {
      if (this.failure) return; // told once, as the embed's failure
      this._emit("error", { code: error.code || "store", error });
    }
  }

  async _problem(response) {
    let detail = `${response.status}`;
    try {
      detail = (await response.json()).detail || detail;
    } catch (_) {
      /* not a problem document */
    }
    return new NbembedError("gateway", `the gateway refused the save: ${detail}`);
  }

  _post(message) {
    this.iframe.contentWindow.postMessage({ protocol: PROTOCOL, ...message }, this.notebookOrigin);
  }

  _receive(event) {
    if (event.source !== this.iframe.contentWindow) return;
    const data = event.data;
    if (!data || data.protocol !== PROTOCOL || typeof data.type !== "string") return;
    if (data.type === "refused") {
      // The hub's login page (the iframe URL's origin): the ticket was refused.
      if (event.origin !== this._loginOrigin || !REFUSAL_CODES.includes(data.code)) return;
      this._fail(data.code, `the notebook's login was refused: ${data.code}`);
      return;
    }
    if (event.origin !== this.notebookOrigin) return;
    if (data.type === "hello") {
      clearTimeout(this._helloTimer);
      this._helloed();
    } else if (data.type === "ready") {
      if (typeof data.path !== "string" || !KERNEL_STATUSES.includes(data.kernel)) return;
      clearTimeout(this._helloTimer); // a bridge that said ready said hello
      this._helloed();
      this.ready = true;
      this.kernel = data.kernel;
      this._emit("ready", { path: data.path, kernel: data.kernel });
      this._emit("kernel", { status: data.kernel });
    } else if (data.type === "kernel") {
      if (!KERNEL_STATUSES.includes(data.status)) return;
      this.kernel = data.status;
      this._emit("kernel", { status: data.status });
    } else if (data.type === "dirty") {
      if (typeof data.dirty !== "boolean") return;
      this.dirty = data.dirty;
      this._emit("dirty", { dirty: data.dirty });
    } else if (data.type === "saved" || data.type === "reloaded" || data.type === "error") {
      const pending = this._pending.get(data.requestId);
      if (!pending) return;
      this._pending.delete(data.requestId);
      clearTimeout(pending.timer);
      if (data.type === "saved" || data.type === "reloaded") {
        pending.resolve({ path: data.path, lastModified: data.lastModified });
      } else {
        const error = new NbembedError("jupyter", data.reason || "Jupyter could not save");
        this._emit("error", { code: "jupyter", error });
        pending.reject(error);
      }
    } else if (data.type === "user-saved") {
      // A save made inside Jupyter (Ctrl-S, autosave); the server stores it itself.
      if (typeof data.path !== "string" || typeof data.lastModified !== "string") return;
      this._emit("saved", { path: data.path, lastModified: data.lastModified, byUser: true });
      if (data.lastModified) this._storedByUser(data.lastModified);
    }
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

// A view has no scripts of its own and needs none: an empty sandbox gives it an
// opaque origin, no scripts, no forms, no popups, no top navigation.
export const VIEW_SANDBOX = "";

/**
 * Show a stored revision read-only, in a sandboxed iframe (no allow-scripts).
 * `html`: the page your backend got from GET /v1/notebooks/{id}/view (with the
 * tenant's API key, which never reaches the browser); or `src`: a URL of your
 * backend that serves that page (same-site, with your own authentication).
 * @param {HTMLElement} element
 * @param {import("./nbembed").ViewOptions} options
 */
export function mountView(element, options) {
  if (!options || (!options.html && !options.src)) {
    throw new NbembedError("bad-options", "html or src is required");
  }
  const iframe = document.createElement("iframe");
  iframe.setAttribute("sandbox", VIEW_SANDBOX);
  iframe.setAttribute("referrerpolicy", "no-referrer");
  iframe.title = options.title || "Notebook (read-only)";
  iframe.style.cssText = "width:100%;height:100%;border:0";
  if (options.html) iframe.srcdoc = options.html;
  else iframe.src = options.src;
  element.replaceChildren(iframe);
  return { iframe, destroy: () => iframe.remove() };
}

/**
 * Fetch the diff between two revisions (GET /v1/notebooks/{id}/diff): nbdime's
 * JSON diff with both revisions' numbers, labels and authors. `token` is the
 * tenant's API key on your backend (Node 18+ has fetch); in a page, point
 * `gatewayUrl` at a route of your backend that adds it, and leave `token` out.
 */
export async function fetchDiff({ gatewayUrl, notebookId, from, to, token, fetch: get = fetch }) {
  const base = gatewayUrl.replace(/\/$/, "");
  const query = new URLSearchParams({ from: String(from) });
  if (to !== undefined && to !== null) query.set("to", String(to));
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const url = `${base}/v1/notebooks/${encodeURIComponent(notebookId)}/diff?${query}`;
  const answer = await get(url, { headers, credentials: token ? "omit" : "include" });
  if (!answer.ok) {
    let detail = `${answer.status}`;
    try {
      detail = (await answer.json()).detail || detail;
    } catch (_) {
      /* not a problem document */
    }
    throw new NbembedError("gateway", `the gateway refused the diff: ${detail}`);
  }
  return answer.json();
}

/**
 * One line per changed cell of a diff (cell numbers are positions in the older revision, from 1;
 * an added cell is inserted before that position),
 * for a list a host can show without rendering nbdime's format.
 */
export function describeDiff(diff) {
  const lines = [];
  for (const top of diff) {
    if (top.key === "metadata") lines.push("notebook metadata changed");
    if (top.key !== "cells" || top.op !== "patch") continue;
    for (const entry of top.diff) {
      const cell = Number(entry.key) + 1;
      if (entry.op === "addrange") {
        for (const added of entry.valuelist) lines.push(`cell ${cell}: added (${added.cell_type})`);
      } else if (entry.op === "removerange") {
        lines.push(entry.length === 1 ? `cell ${cell}: removed` : `cells ${cell}–${cell + entry.length - 1}: removed`);
      } else if (entry.op === "patch") {
        const parts = [...new Set(entry.diff.map((d) => d.key))].filter((k) => k !== "id");
        if (parts.length) lines.push(`cell ${cell}: ${parts.join(", ")} changed`);
      }
    }
  }
  return lines;
}
