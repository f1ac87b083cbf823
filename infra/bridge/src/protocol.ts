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

/** What the bridge tells the host page. */
export type BridgeMessage =
  | { protocol: typeof PROTOCOL; type: 'ready'; path: string }
  | { protocol: typeof PROTOCOL; type: 'saved'; requestId: string; path: string; lastModified: string }
  | { protocol: typeof PROTOCOL; type: 'reloaded'; requestId: string; path: string; lastModified: string }
  | { protocol: typeof PROTOCOL; type: 'error'; requestId: string; reason: string }
  | { protocol: typeof PROTOCOL; type: 'user-saved'; path: string; lastModified: string };

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
