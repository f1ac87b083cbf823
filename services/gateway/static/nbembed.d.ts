// Types of the nbembed host SDK served at /sdk/nbembed.js.

export declare const PROTOCOL: "nbembed.v1";

export interface MountOptions {
  /** Base URL of the nbembed gateway. */
  gatewayUrl: string;
  /** From your backend's POST /v1/sessions answer. */
  sessionId: string;
  /** The ready session's iframe_url (single-use: read the session right before mounting). */
  iframeUrl: string;
  /** The session's browser_token (only in the POST /v1/sessions answer). */
  browserToken: string;
  /**
   * The session's `restricted` field (restricted-data mode). Only `false` lets
   * the iframe download files (sandbox `allow-downloads`); omitted counts as
   * restricted. The server refuses downloads in that mode whatever the page does.
   */
  restricted?: boolean;
  /**
   * The ready session's notebook_origin: the only origin the SDK talks to inside
   * the iframe. Needed with per-user origins (the iframe URL is the hub's, the
   * notebook is on the user's own origin); default: the iframe URL's origin.
   */
  notebookOrigin?: string;
  /** The iframe's title, for assistive technology. */
  title?: string;
  /** How long to wait for Jupyter to confirm a save (default 30 000 ms). */
  saveTimeoutMs?: number;
  /** How long to wait for the revision to be stored (default 60 000 ms). */
  storeTimeoutMs?: number;
  /**
   * How long to wait for the notebook's bridge to say hello (default 30 000 ms).
   * Without it by then the embed fails with code "frame-refused": the notebook's
   * server refused to be framed by this page (its origin is not one of the
   * tenant's allowed origins), or the notebook never loaded.
   */
  helloTimeoutMs?: number;
  /**
   * Follow the session (default true): one long-poll of GET /v1/sessions/{id}
   * at a time, with the browser token. Emits "ended" when it is over, and
   * reloads the notebook (a "reloaded" event with `restoredRevision`) when a
   * restore rewrote its file. Without it, call `reload()` after a restore.
   */
  followSession?: boolean;
}

/**
 * Why a session ended (the session resource's end_code). After server-culled,
 * server-stopped or server-crashed the notebook in the iframe no longer works:
 * open it again in a new session (its saved revisions are kept).
 */
export type EndCode =
  | "ended-by-host"
  | "notebook-deleted"
  | "server-culled"
  | "server-stopped"
  | "server-crashed";

export interface Ended {
  /** "ended", or "failed" when the session never opened. */
  status: "ended" | "failed";
  /** An EndCode when ended; the failure's code when failed. */
  code: EndCode | string | undefined;
  /** For a developer: the session's end_reason (or failure reason). */
  reason: string;
}

export interface Stored {
  saveId: string;
  revision: number;
  /** true exactly when this save made a new revision (false: same content as the latest). */
  changed: boolean;
}

/** What `stored` carries: which save it was (the page's `save()`, or made inside Jupyter). */
export interface StoredEvent extends Stored {
  /** true for a save made inside Jupyter (Ctrl-S, autosave), false for `save()`'s. */
  byUser: boolean;
}

/**
 * Why the embed cannot work (its `failure`, and `error` events' code): then every
 * `save()` and `reload()` rejects at once with it.
 * - "frame-refused": no hello from the notebook within `helloTimeoutMs`;
 * - "ticket-expired", "ticket-used": the hub refused the iframe URL's login ticket
 *   (mount with a fresh `iframe_url`: read the session again);
 * - "ended": the session is over (see the `ended` event for why).
 */
export type FailureCode = "frame-refused" | "ticket-expired" | "ticket-used" | "ended";

export declare class NbembedError extends Error {
  readonly code:
    | FailureCode
    | "bad-options"
    | "timeout"
    | "jupyter"
    | "store"
    | "gateway"
    | "destroyed";
}

/**
 * The kernel as the user can use it: "starting" (starting, restarting, not yet
 * connected), "idle" and "busy" (connected: code runs, or queues), "dead" (no
 * kernel runs the notebook: it died, was shut down, or none was chosen).
 */
export type KernelStatus = "starting" | "idle" | "busy" | "dead";

export declare const KERNEL_STATUSES: readonly KernelStatus[];

export interface Reloaded {
  path: string;
  lastModified: string;
  /** Set when the SDK reloaded by itself because a restore wrote this revision. */
  restoredRevision?: number;
}

export interface EmbedEventMap {
  /**
   * The user can type and run: the notebook is open and its kernel connected, or
   * (after 20 s without a connected kernel) open with `kernel` as it is then.
   * A `kernel` event with the same status follows at once.
   */
  ready: CustomEvent<{ path: string; kernel: KernelStatus }>;
  /** The kernel's status, at `ready` and at every change after it. */
  kernel: CustomEvent<{ status: KernelStatus }>;
  /** The notebook has (true) or no longer has (false) changes Jupyter has not saved. */
  dirty: CustomEvent<{ dirty: boolean }>;
  /** Jupyter saved, once per save: `byUser` true for Ctrl-S and autosave, false for `save()`. */
  saved: CustomEvent<{ path: string; lastModified: string; byUser: boolean }>;
  /** That save's revision is durable (every save, whatever started it). */
  stored: CustomEvent<StoredEvent>;
  /** Jupyter read the notebook's file again (`reload()`, or by itself after a restore). */
  reloaded: CustomEvent<Reloaded>;
  /**
   * Something failed that no promise reports: the embed's failure (a FailureCode;
   * `save()` then rejects at once), a save Jupyter refused ("jupyter"), or the
   * storing of a save made inside Jupyter ("store", "timeout", "gateway").
   */
  error: CustomEvent<{ code: NbembedError["code"]; error: NbembedError }>;
  /** The session is over (its server stopped, the host ended it, its notebook deleted). */
  ended: CustomEvent<Ended>;
}

export declare class Embed extends EventTarget {
  readonly iframe: HTMLIFrameElement;
  readonly ready: boolean;
  /** The kernel's status once the notebook is ready, else null. */
  readonly kernel: KernelStatus | null;
  /** Whether the notebook has changes Jupyter has not saved. */
  readonly dirty: boolean;
  /** Null while the embed works; then the error every save() and reload() rejects with. */
  readonly failure: NbembedError | null;
  /** Whether the iframe was mounted restricted (no `allow-downloads`). */
  readonly restricted: boolean;
  /** Null while the session is open; then why it ended. */
  readonly ended: Ended | null;
  /** Rejects at once with the embed's failure (code "ended", "frame-refused", …). */
  save(): Promise<Stored>;
  /**
   * Jupyter reads the notebook's file again (after a restore wrote it); unsaved
   * edits are dropped and no "file changed on disk" dialog follows.
   */
  reload(): Promise<Reloaded>;
  destroy(): void;
  addEventListener<K extends keyof EmbedEventMap>(
    type: K,
    listener: (event: EmbedEventMap[K]) => void,
  ): void;
}

/** The iframe's sandbox for a session: `allow-downloads` only when `restricted` is false. */
export declare function sandboxFor(restricted: boolean | undefined): string;

export declare function mount(element: HTMLElement, options: MountOptions): Embed;

export interface ViewOptions {
  /** The page from GET /v1/notebooks/{id}/view, fetched by your backend. */
  html?: string;
  /** Or a URL of your backend that serves that page. */
  src?: string;
  title?: string;
}

/** The read-only view's sandbox: empty (no scripts, opaque origin). */
export declare const VIEW_SANDBOX: "";

export declare function mountView(
  element: HTMLElement,
  options: ViewOptions,
): { iframe: HTMLIFrameElement; destroy(): void };

export interface DiffEntry {
  op: "add" | "remove" | "replace" | "patch" | "addrange" | "removerange";
  key: number | string;
  value?: unknown;
  valuelist?: unknown[] | string;
  length?: number;
  diff?: DiffEntry[];
}

export interface RevisionRef {
  revision: number;
  sha256: string;
  created_at: string;
  label?: string | null;
  author?: string | null;
}

export interface NotebookDiff {
  notebook_id: string;
  from: RevisionRef;
  to: RevisionRef;
  format: "nbdime";
  diff: DiffEntry[];
}

export declare function fetchDiff(options: {
  gatewayUrl: string;
  notebookId: string;
  from: number;
  /** Default: the latest revision. */
  to?: number;
  /** The tenant's API key (backends only). */
  token?: string;
  fetch?: typeof fetch;
}): Promise<NotebookDiff>;

/** One line per changed cell, e.g. "cell 2: source, outputs changed". */
export declare function describeDiff(diff: DiffEntry[]): string[];
