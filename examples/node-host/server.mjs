// A complete minimal host app for nbembed in Node.js (20+), with no dependency
// beyond Node itself: the backend holds the tenant's API key and talks to the
// gateway; the page (index.html) only ever sees a session's iframe URL, its
// notebook origin and its browser token, and uses the SDK the gateway serves.
//
//   NBEMBED_GATEWAY_URL=http://127.0.0.1:8080 NBEMBED_API_KEY_FILE=.run/secrets/demo-api-key \
//     node examples/node-host/server.mjs
//
// Settings (environment):
//   NBEMBED_GATEWAY_URL         the gateway as this backend reaches it
//   NBEMBED_PUBLIC_GATEWAY_URL  the gateway as browsers reach it (default: the same)
//   NBEMBED_API_KEY_FILE        a file holding the tenant's API key (or NBEMBED_API_KEY)
//   HOST, PORT                  where this app listens (default 127.0.0.1:8190)
//
// The page's origin must be one of the tenant's allowed origins (the hub's CSP
// frame-ancestors and the gateway's CORS), and on the same site as the hub.

import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";

const GATEWAY = process.env.NBEMBED_GATEWAY_URL ?? "http://127.0.0.1:8080";
const PUBLIC_GATEWAY = process.env.NBEMBED_PUBLIC_GATEWAY_URL ?? GATEWAY;
const API_KEY = (
  process.env.NBEMBED_API_KEY ?? readFileSync(process.env.NBEMBED_API_KEY_FILE, "utf8")
).trim();
const HOST = process.env.HOST ?? "127.0.0.1";
const PORT = Number(process.env.PORT ?? 8190);
const PAGE = readFileSync(new URL("./index.html", import.meta.url), "utf8").replaceAll(
  "{{GATEWAY}}",
  PUBLIC_GATEWAY,
);

/** An error the gateway answered, as RFC 9457 problem details. */
class GatewayError extends Error {
  constructor(status, problem) {
    super(problem.detail ?? problem.title ?? `gateway answered ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Call the gateway. 429 and 503 carry Retry-After: wait that long and try again
 * (a few times); every other error is thrown with the gateway's problem details.
 * Requests that create something carry an Idempotency-Key, so a retry after a
 * lost answer returns the first result instead of doing the work twice.
 */
async function gateway(method, path, { body, idempotencyKey, attempts = 4 } = {}) {
  const headers = { Authorization: `Bearer ${API_KEY}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  for (let attempt = 1; ; attempt++) {
    let response;
    try {
      response = await fetch(GATEWAY + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      // The gateway was unreachable: safe to retry only what is idempotent.
      if (attempt < attempts && (method !== "POST" || idempotencyKey)) {
        await sleep(500 * attempt);
        continue;
      }
      throw new GatewayError(503, { title: "Gateway unreachable", detail: String(error) });
    }
    if ((response.status === 429 || response.status === 503) && attempt < attempts) {
      const retryAfter = Number(response.headers.get("Retry-After") ?? 1);
      await sleep(Math.min(retryAfter, 10) * 1000);
      continue;
    }
    if (response.status === 204) return null;
    const payload = await response.json();
    if (!response.ok) throw new GatewayError(response.status, payload);
    return payload;
  }
}

const FINAL = new Set(["ready", "failed", "ended"]);

/** Open a session for one of this app's users and wait (long-poll) until it is ready. */
async function openNotebook({ user, notebookId, name }) {
  const request = { user_id: user };
  if (notebookId) request.notebook_id = notebookId;
  else request.notebook_name = name || "Untitled";
  let session = await gateway("POST", "/v1/sessions", {
    body: request,
    idempotencyKey: randomUUID(),
  });
  const browserToken = session.browser_token; // only the first answer carries it
  while (!FINAL.has(session.status)) {
    const query = new URLSearchParams({ wait: "25", status: session.status });
    session = await gateway("GET", `/v1/sessions/${session.id}?${query}`);
  }
  if (session.status !== "ready") {
    const why = session.failure?.reason ?? session.end_reason ?? session.status;
    throw new GatewayError(502, { title: "The notebook could not open", detail: why });
  }
  return {
    session_id: session.id,
    notebook_id: session.notebook_id,
    iframe_url: session.iframe_url,
    notebook_origin: session.notebook_origin,
    browser_token: browserToken,
    restricted: session.restricted,
  };
}

async function readJson(request) {
  const chunks = [];
  let size = 0;
  for await (const chunk of request) {
    size += chunk.length;
    if (size > 64 * 1024) throw new GatewayError(413, { title: "Body too large" });
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
}

function send(response, status, payload) {
  if (payload === undefined) {
    response.writeHead(status).end();
    return;
  }
  response.writeHead(status, { "Content-Type": "application/json" });
  response.end(JSON.stringify(payload));
}

/** This app's own small API, as its page calls it; the users here are whatever ?user= says. */
async function route(request, response) {
  const url = new URL(request.url, `http://${request.headers.host}`);
  const parts = url.pathname.split("/").filter(Boolean);
  if (request.method === "GET" && url.pathname === "/") {
    response.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    return response.end(PAGE);
  }
  if (request.method === "GET" && url.pathname === "/api/notebooks") {
    const query = new URLSearchParams({ user_id: url.searchParams.get("user") ?? "", limit: "100" });
    return send(response, 200, await gateway("GET", `/v1/notebooks?${query}`));
  }
  if (request.method === "POST" && url.pathname === "/api/open") {
    const body = await readJson(request);
    if (typeof body.user !== "string" || !body.user) {
      return send(response, 422, { detail: "user is required" });
    }
    return send(response, 200, await openNotebook({ user: body.user, notebookId: body.notebook_id, name: body.name }));
  }
  if (request.method === "DELETE" && parts.length === 3 && parts[1] === "sessions") {
    await gateway("DELETE", `/v1/sessions/${encodeURIComponent(parts[2])}`);
    return send(response, 204);
  }
  if (request.method === "DELETE" && parts.length === 3 && parts[1] === "notebooks") {
    await gateway("DELETE", `/v1/notebooks/${encodeURIComponent(parts[2])}`);
    return send(response, 204);
  }
  send(response, 404, { detail: "not found" });
}

createServer((request, response) => {
  route(request, response).catch((error) => {
    const status = error instanceof GatewayError ? error.status : 500;
    send(response, status, { detail: error.message });
  });
}).listen(PORT, HOST, () => console.log(`node host app on http://${HOST}:${PORT}/`));
