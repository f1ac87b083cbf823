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
}

export interface Stored {
  saveId: string;
  revision: number;
  /** false when the content equalled the latest revision (no new revision). */
  changed: boolean;
}

export declare class NbembedError extends Error {
  readonly code: "bad-options" | "timeout" | "jupyter" | "store" | "gateway" | "destroyed";
}

export interface EmbedEventMap {
  ready: CustomEvent<{ path: string }>;
  saved: CustomEvent<{ path: string; lastModified: string; byUser?: boolean }>;
  stored: CustomEvent<Stored>;
  error: CustomEvent<{ error: NbembedError }>;
}

export declare class Embed extends EventTarget {
  readonly iframe: HTMLIFrameElement;
  readonly ready: boolean;
  /** Whether the iframe was mounted restricted (no `allow-downloads`). */
  readonly restricted: boolean;
  save(): Promise<Stored>;
  destroy(): void;
  addEventListener<K extends keyof EmbedEventMap>(
    type: K,
    listener: (event: EmbedEventMap[K]) => void,
  ): void;
}

/** The iframe's sandbox for a session: `allow-downloads` only when `restricted` is false. */
export declare function sandboxFor(restricted: boolean | undefined): string;

export declare function mount(element: HTMLElement, options: MountOptions): Embed;
