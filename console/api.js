// The public API as the console uses it: the token call, then `Authorization: Bearer` on every
// call. Every answer is read by its envelope `code` (never by its HTTP status): anything but
// "OK" is a failure carrying the server's `error.message`.

/** Token problems after which a new token is asked for (old and new spellings). */
const TOKEN_TYPES = new Set(["invalid_token", "invalid_access_token", "access_token_expired"]);
const SESSION_KEY = "contactsd.console.session";

/** A failed call: the envelope's `code`, `error.type`, `error.message` and `data`. */
export class ApiError extends Error {
  constructor(code, type, message, data) {
    super(message || type || code);
    this.code = code;
    this.type = type;
    this.data = data || {};
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class Api {
  constructor() {
    /** {appid, teamId, token}; kept in sessionStorage so a reload stays signed in. */
    this.session = null;
    try {
      this.session = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    } catch {
      this.session = null;
    }
    /** Asked for a new token when the current one is refused; resolves true when renewed. */
    this.onTokenRefused = null;
    this.renewing = null;
  }

  get signedIn() {
    return Boolean(this.session && this.session.token);
  }

  /** Gets a token with the app's secret; the secret is not kept. */
  async signIn(appid, secret, teamId) {
    const data = await this.call("GET", "api/oauth2/access_token", {
      query: { appid, secret, grant_type: "client_credential" },
      anonymous: true,
    });
    this.session = { appid, teamId: String(teamId), token: data.access_token };
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(this.session));
  }

  signOut() {
    this.session = null;
    sessionStorage.removeItem(SESSION_KEY);
  }

  /** A path below this directory: `team("/groups")`. */
  team(path) {
    return `api/contacts/teams/${encodeURIComponent(this.session.teamId)}${path}`;
  }

  get(path, query) {
    return this.call("GET", path, { query });
  }

  post(path, body, query) {
    return this.call("POST", path, { body, query });
  }

  delete(path) {
    return this.call("DELETE", path, {});
  }

  /** One call; renews the token once on a token problem and waits out a rate limit. */
  async call(method, path, { query, body, anonymous } = {}) {
    for (let attempt = 0; ; attempt++) {
      const url = new URL(path, document.baseURI);
      for (const [key, value] of Object.entries(query || {})) {
        if (value !== undefined && value !== null && value !== "") {
          url.searchParams.set(key, String(value));
        }
      }
      const headers = { Accept: "application/json" };
      if (!anonymous && this.session) headers.Authorization = `Bearer ${this.session.token}`;
      let payload;
      if (body !== undefined) {
        headers["Content-Type"] = "application/json";
        payload = typeof body === "string" ? body : JSON.stringify(body);
      }
      let response;
      try {
        response = await fetch(url, { method, headers, body: payload, cache: "no-store" });
      } catch (error) {
        throw new ApiError("Unreachable", "network", `The server could not be reached (${error.message}).`);
      }
      let envelope;
      try {
        envelope = await response.json();
      } catch {
        envelope = null;
      }
      if (!envelope || typeof envelope.code !== "string") {
        throw new ApiError("InternalServerError", "no_envelope",
          `The server answered HTTP ${response.status} without an envelope.`);
      }
      if (envelope.code === "OK") return envelope.data;
      const type = (envelope.error && envelope.error.type) || "";
      const message = (envelope.error && envelope.error.message) || type || envelope.code;
      const error = new ApiError(envelope.code, type, message, envelope.data);
      if (!anonymous && TOKEN_TYPES.has(type) && attempt === 0 && (await this.renew(error))) {
        continue;
      }
      if (type === "request_rate_limited" && attempt < 3) {
        await sleep(1000 * (Number(response.headers.get("Retry-After")) || 1));
        continue;
      }
      throw error;
    }
  }

  /** One renewal at a time, shared by every call that was refused meanwhile. */
  renew(error) {
    if (!this.onTokenRefused) return Promise.resolve(false);
    if (!this.renewing) {
      this.renewing = this.onTokenRefused(error).finally(() => {
        this.renewing = null;
      });
    }
    return this.renewing;
  }
}
