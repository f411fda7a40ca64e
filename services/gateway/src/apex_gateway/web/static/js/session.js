// The signed-in session of this tab: tokens from /auth (proxied by the gateway, so one
// origin), refreshed before the access token expires, and an API helper that refreshes
// once on an expired token. Tokens live in sessionStorage: they survive a reload of this
// tab but are not shared between tabs (a refresh token is single use: two tabs sharing
// one would revoke each other's session).

const KEY = "apex.session";

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "http_" + status;
    this.retryable = Boolean(error.retryable);
    this.details = error.details || null;
  }
}

function decodeClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch (_error) {
    return null;
  }
}

async function readJson(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch (_error) {
    return { error: { code: "bad_response", message: text.slice(0, 200) } };
  }
}

export class Session extends EventTarget {
  constructor() {
    super();
    this.access = null;
    this.refreshToken = null;
    this.email = null;
    this._timer = null;
    this._refreshing = null;
  }

  static restore() {
    const session = new Session();
    try {
      const saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
      if (saved && saved.refresh) {
        session.access = saved.access;
        session.refreshToken = saved.refresh;
        session.email = saved.email;
        session._schedule();
      }
    } catch (_error) {
      sessionStorage.removeItem(KEY);
    }
    return session;
  }

  get signedIn() {
    return Boolean(this.refreshToken);
  }

  get claims() {
    return (this.access && decodeClaims(this.access)) || {};
  }

  get isAdmin() {
    return (this.claims.roles || []).includes("admin");
  }

  get isOperator() {
    return (this.claims.roles || []).includes("operator");
  }

  async login(email, password) {
    this._adopt(await this._auth("/auth/login", { email, password }), email);
  }

  async register(email, password, tenant) {
    this._adopt(await this._auth("/auth/register", { email, password, tenant }), email);
  }

  async logout() {
    const token = this.access;
    this.end();
    if (token) {
      await fetch("/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${token}` } })
        .catch(() => null);
    }
  }

  // A fresh access token; concurrent callers share one refresh (the token rotates).
  refresh() {
    if (!this._refreshing) {
      this._refreshing = this._auth("/auth/refresh", { refresh_token: this.refreshToken })
        .then((tokens) => this._adopt(tokens, this.email))
        .catch((error) => {
          if (error instanceof ApiError && error.status === 401) this.end(error.code);
          throw error;
        })
        .finally(() => { this._refreshing = null; });
    }
    return this._refreshing;
  }

  async api(method, path, { json, body, headers = {} } = {}) {
    const attempt = () => fetch(path, {
      method,
      headers: {
        Authorization: `Bearer ${this.access}`,
        ...(json !== undefined ? { "Content-Type": "application/json" } : {}),
        ...headers,
      },
      body: json !== undefined ? JSON.stringify(json) : body,
    });
    let response = await attempt();
    if (response.status === 401 && this.refreshToken) {
      await this.refresh();
      response = await attempt();
    }
    const data = await readJson(response);
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  async _auth(path, payload) {
    const response = await fetch(path, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload),
    });
    const data = await readJson(response);
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  _adopt(tokens, email) {
    this.access = tokens.access_token;
    this.refreshToken = tokens.refresh_token;
    this.email = email;
    sessionStorage.setItem(KEY, JSON.stringify({ access: this.access, refresh: this.refreshToken, email }));
    this._schedule();
    this.dispatchEvent(new CustomEvent("tokens"));
  }

  end(reason = null) {
    clearTimeout(this._timer);
    this.access = this.refreshToken = null;
    sessionStorage.removeItem(KEY);
    this.dispatchEvent(new CustomEvent("signedout", { detail: { reason } }));
  }

  // Refresh ahead of expiry: a minute before it, or at three quarters of a short lifetime.
  _schedule() {
    clearTimeout(this._timer);
    const { exp, iat } = this.claims;
    if (!exp) return;
    const lifetime = exp - (iat || exp - 900);
    const lead = Math.min(60, lifetime * 0.25);
    const delayMs = Math.max(1000, (exp - lead) * 1000 - Date.now());
    this._timer = setTimeout(() => this.refresh().catch(() => null), delayMs);
  }
}
