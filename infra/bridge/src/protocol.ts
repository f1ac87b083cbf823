// The postMessage protocol between the host page's SDK and this bridge.
// Pure functions only, so they are unit-tested without a browser.

export const PROTOCOL = 'nbembed.v1';

/**
 * What the host page may ask: save the notebook, or reload it from its file
 * (after the host restored a revision, which nbembed wrote into that file).
 */
export interface HostRequest {
  protocol: typeof PROTOCOL;
  type: 'save' | 'reload';
  requestId: string;
}

/** @deprecated the old name of HostRequest. */
export type SaveRequest = HostRequest;

/**
 * The kernel as the host sees it: `starting` (starting, restarting or not yet
 * connected), `idle` and `busy` (connected: code typed now runs), `dead` (no
 * kernel runs this notebook: it died, was shut down, or none was chosen).
 */
export type KernelStatus = 'starting' | 'idle' | 'busy' | 'dead';

/** What the bridge tells the host page. */
export type BridgeMessage =
  | { protocol: typeof PROTOCOL; type: 'hello' }
  | { protocol: typeof PROTOCOL; type: 'ready'; path: string; kernel: KernelStatus }
  | { protocol: typeof PROTOCOL; type: 'kernel'; status: KernelStatus }
  | { protocol: typeof PROTOCOL; type: 'dirty'; dirty: boolean }
  | { protocol: typeof PROTOCOL; type: 'saved'; requestId: string; path: string; lastModified: string }
  | { protocol: typeof PROTOCOL; type: 'reloaded'; requestId: string; path: string; lastModified: string }
  | { protocol: typeof PROTOCOL; type: 'error'; requestId: string; reason: string }
  | { protocol: typeof PROTOCOL; type: 'user-saved'; path: string; lastModified: string };

/**
 * How long the bridge waits, after the notebook's document is ready, for its
 * kernel to be connected before it says `ready` anyway (with the kernel status
 * as it is then; a `kernel` message follows when it changes).
 */
export const READY_KERNEL_BOUND_MS = 20000;

/** The allowed origins from the page config option (comma separated). */
export function parseAllowedOrigins(option: string): string[] {
  return option
    .split(',')
    .map(origin => origin.trim())
    .filter(origin => {
      try {
        return new URL(origin).origin === origin;
      } catch {
        return false;
      }
    });
}

/** Exact origin match: no wildcards, no prefixes, and never the opaque "null". */
export function isAllowedOrigin(origin: string, allowed: readonly string[]): boolean {
  return origin !== 'null' && allowed.includes(origin);
}

const REQUEST_ID = /^[A-Za-z0-9-]{1,64}$/;

/** A valid request from the host page, or null for anything else. */
export function parseHostMessage(data: unknown): HostRequest | null {
  if (typeof data !== 'object' || data === null) {
    return null;
  }
  const message = data as Record<string, unknown>;
  if (message.protocol !== PROTOCOL || (message.type !== 'save' && message.type !== 'reload')) {
    return null;
  }
  if (typeof message.requestId !== 'string' || !REQUEST_ID.test(message.requestId)) {
    return null;
  }
  return { protocol: PROTOCOL, type: message.type, requestId: message.requestId };
}

/**
 * The host's kernel status from JupyterLab's `sessionContext.kernelDisplayStatus`
 * (the kernel's status while connected, else its connection status) and
 * whether the session has a kernel at all.
 */
export function kernelStatus(display: string, hasKernel: boolean): KernelStatus {
  switch (display) {
    case 'idle':
    case 'busy':
      return display;
    case 'dead':
    case 'terminating':
    case 'disconnected': // the connection gave up reconnecting
      return 'dead';
    case 'unknown':
    case '':
      // Connected but no status heard yet, or no kernel (none chosen, shut down).
      return hasKernel ? 'starting' : 'dead';
    default: // starting, restarting, autorestarting, initializing, connecting
      return 'starting';
  }
}

/**
 * Whether to say `ready` now: the kernel is connected and idle (its first
 * status after connecting is busy, answering the page's kernel_info request;
 * then it is idle and code typed runs at once), or no kernel will come (dead).
 * `starting` and that first `busy` wait, up to READY_KERNEL_BOUND_MS.
 */
export function kernelSettled(status: KernelStatus): boolean {
  return status === 'idle' || status === 'dead';
}

/**
 * Tells apart the saves the host page asked for from Jupyter's own (Ctrl-S,
 * autosave), so each save is told to the host exactly once: as the reply to
 * its request, or as `user-saved`.
 *
 * JupyterLab signals every completed save (`saveState` "completed", with the
 * file's new timestamp) but not which call made it. While host saves are in
 * flight, each completion is given to the oldest one without a completion
 * yet; any other completion is Jupyter's own. Completions and saves balance
 * (one each), so even when a Ctrl-S and a host save finish together each of
 * the two timestamps is told once.
 */
export class SaveLedger {
  private readonly _hostSaves: { requestId: string; lastModified: string | null }[] = [];

  /** A host save starts (before `context.save()` is called). */
  hostSaveStarted(requestId: string): void {
    this._hostSaves.push({ requestId, lastModified: null });
  }

  /**
   * A save completed with this timestamp: null when a host save claims it,
   * else the timestamp to tell the host as Jupyter's own save.
   */
  completed(lastModified: string): string | null {
    const waiting = this._hostSaves.find(save => save.lastModified === null);
    if (waiting === undefined) {
      return lastModified;
    }
    waiting.lastModified = lastModified;
    return null;
  }

  /**
   * A host save's call returned (or failed): the timestamp of the completion
   * it claimed, or null if none; it is forgotten. A failed host save that
   * claimed one hands it back to be told as Jupyter's own.
   */
  hostSaveEnded(requestId: string): string | null {
    const index = this._hostSaves.findIndex(save => save.requestId === requestId);
    if (index < 0) {
      return null;
    }
    const [save] = this._hostSaves.splice(index, 1);
    return save.lastModified;
  }
}
