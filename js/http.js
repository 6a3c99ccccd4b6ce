// Headers, Request and Response (the Fetch standard's shapes; bodies are fully buffered).

function normalizeName(name) {
  const n = String(name).toLowerCase();
  if (!/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(n)) throw new TypeError(`invalid header name: "${name}"`);
  return n;
}
function normalizeValue(value) {
  const v = String(value).replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, "");
  if (/[\0\r\n]/.test(v)) throw new TypeError("invalid header value");
  return v;
}

export class Headers {
  #map = new Map(); // lower-case name -> values[]
  #flat = null;     // from the host, parsed on first use

  constructor(init) {
    if (init === undefined || init === null) return;
    if (init instanceof Headers) {
      for (const [k, v] of init) this.append(k, v);
    } else if (typeof init[Symbol.iterator] === "function") {
      for (const pair of init) {
        const [k, v] = Array.from(pair);
        if (pair.length !== 2 && Array.from(pair).length !== 2) {
          throw new TypeError("Headers: each init pair must have two items");
        }
        this.append(k, v);
      }
    } else if (typeof init === "object") {
      for (const k of Object.keys(init)) this.append(k, init[k]);
    } else {
      throw new TypeError("Headers: init must be an object, an array of pairs or Headers");
    }
  }

  static _fromFlat(flat) {
    const h = new Headers();
    h.#flat = flat;
    return h;
  }
  #materialize() {
    if (this.#flat) {
      const flat = this.#flat;
      this.#flat = null;
      for (let i = 0; i + 1 < flat.length; i += 2) this.append(flat[i], flat[i + 1]);
    }
    return this.#map;
  }
  append(name, value) {
    const map = this.#materialize();
    const n = normalizeName(name);
    const v = normalizeValue(value);
    const list = map.get(n);
    if (list) list.push(v);
    else map.set(n, [v]);
  }
  set(name, value) {
    this.#materialize().set(normalizeName(name), [normalizeValue(value)]);
  }
  get(name) {
    const list = this.#materialize().get(normalizeName(name));
    return list ? list.join(", ") : null;
  }
  getSetCookie() {
    return [...(this.#materialize().get("set-cookie") || [])];
  }
  has(name) {
    return this.#materialize().has(normalizeName(name));
  }
  delete(name) {
    this.#materialize().delete(normalizeName(name));
  }
  forEach(callback, thisArg) {
    for (const [k, v] of this) callback.call(thisArg, v, k, this);
  }
  *entries() {
    const names = [...this.#materialize().keys()].sort();
    for (const n of names) {
      if (n === "set-cookie") for (const v of this.#map.get(n)) yield [n, v];
      else yield [n, this.#map.get(n).join(", ")];
    }
  }
  *keys() {
    for (const [k] of this.entries()) yield k;
  }
  *values() {
    for (const [, v] of this.entries()) yield v;
  }
  [Symbol.iterator]() {
    return this.entries();
  }
  // [name, value, name, value, ...] for the host; set-cookie stays one header per value.
  _flat() {
    if (this.#flat) return this.#flat;
    const out = [];
    for (const [k, list] of this.#map) for (const v of list) out.push(k, v);
    return out;
  }
}

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.name = "HttpError";
    this.status = status;
  }
}

// Body: string | Uint8Array | null. Text bodies stay strings until bytes are asked for.
function extractBody(body, headers) {
  if (body === undefined || body === null) return null;
  const setType = (t) => {
    if (!headers.has("content-type")) headers.set("content-type", t);
  };
  if (typeof body === "string") {
    setType("text/plain;charset=UTF-8");
    return body;
  }
  if (body instanceof ArrayBuffer) return new Uint8Array(body.slice(0));
  if (ArrayBuffer.isView(body)) {
    return new Uint8Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength));
  }
  if (body instanceof globalThis.URLSearchParams) {
    setType("application/x-www-form-urlencoded;charset=UTF-8");
    return body.toString();
  }
  setType("text/plain;charset=UTF-8");
  return String(body);
}

class Body {
  #body;
  #used = false;
  _initBody(body) {
    this.#body = body;
  }
  get bodyUsed() {
    return this.#used;
  }
  get body() {
    return this.#body;
  }
  #take() {
    if (this.#used) throw new TypeError("body has already been read");
    this.#used = true;
    return this.#body;
  }
  async text() {
    const b = this.#take();
    if (b === null || b === undefined) return "";
    if (typeof b === "string") return b;
    return new globalThis.TextDecoder().decode(b);
  }
  async json() {
    return JSON.parse(await this.text());
  }
  async arrayBuffer() {
    const b = this.#take();
    if (b === null || b === undefined) return new ArrayBuffer(0);
    const bytes = typeof b === "string" ? new globalThis.TextEncoder().encode(b) : b;
    return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  }
  async bytes() {
    return new Uint8Array(await this.arrayBuffer());
  }
  _bodyForHost() {
    return this.#body ?? null;
  }
}

const kFromHost = Symbol("fromHost");
const kMethods = ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"];
const kRedirectModes = ["follow", "error", "manual"];

function normalizeMethod(method) {
  const m = String(method);
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(m)) throw new TypeError(`invalid method: "${m}"`);
  const upper = m.toUpperCase();
  if (upper === "CONNECT" || upper === "TRACE" || upper === "TRACK") {
    throw new TypeError(`method ${upper} is not allowed`);
  }
  return kMethods.includes(upper) ? upper : m;
}

export class Request extends Body {
  #url;
  #method;
  #headers;
  #signal;
  #redirect;
  constructor(input, init = {}) {
    super();
    if (input === kFromHost) {
      this.#url = init.url;
      this.#method = init.method;
      this.#headers = Headers._fromFlat(init.flatHeaders);
      this.#signal = null;
      this.#redirect = "follow";
      this._initBody(init.body ? new Uint8Array(init.body) : null);
      return;
    }
    init = init ?? {};
    if (input instanceof Request) {
      this.#url = input.url;
      this.#method = init.method !== undefined ? normalizeMethod(init.method) : input.method;
      this.#headers = new Headers(init.headers ?? input.headers);
      this._initBody(init.body !== undefined ? extractBody(init.body, this.#headers) : input._bodyForHost());
    } else {
      this.#url = new globalThis.URL(String(input)).href;
      this.#method = init.method ? normalizeMethod(init.method) : "GET";
      this.#headers = new Headers(init.headers);
      this._initBody(extractBody(init.body, this.#headers));
    }
    if (this._bodyForHost() !== null && (this.#method === "GET" || this.#method === "HEAD")) {
      throw new TypeError("Request with GET/HEAD method cannot have body");
    }
    this.#signal = init.signal !== undefined ? init.signal : input instanceof Request ? input.signal : null;
    const redirect = init.redirect ?? (input instanceof Request ? input.redirect : "follow");
    if (!kRedirectModes.includes(redirect)) {
      throw new TypeError(`Request: redirect must be "follow", "error" or "manual", not "${redirect}"`);
    }
    this.#redirect = redirect;
  }
  // The host's request: the body arrives as an ArrayBuffer (or undefined), headers flat.
  static _fromHost(method, url, flatHeaders, body) {
    return new Request(kFromHost, { method, url, flatHeaders, body });
  }
  get url() {
    return this.#url;
  }
  get method() {
    return this.#method;
  }
  get headers() {
    return this.#headers;
  }
  get signal() {
    return this.#signal;
  }
  get redirect() {
    return this.#redirect;
  }
  clone() {
    return new Request(this);
  }
}

export class Response extends Body {
  #status;
  #statusText;
  #headers;
  #url = "";
  #redirected = false;
  #type = "default";
  constructor(body = null, init = {}) {
    super();
    if (body === kFromHost) {
      // fetch()'s answer: [status, statusText, headers [k, v, ...], Uint8Array, url, redirected]
      const [status, statusText, flatHeaders, bytes, url, redirected] = init;
      this.#status = status;
      this.#statusText = statusText;
      this.#headers = Headers._fromFlat(flatHeaders);
      this.#url = url;
      this.#redirected = redirected;
      this.#type = "basic";
      this._initBody(bytes);
      return;
    }
    const status = init.status === undefined ? 200 : Number(init.status);
    if (!Number.isInteger(status) || status < 200 || status > 599) {
      throw new RangeError(`Response: status ${init.status} is not in the range 200 to 599`);
    }
    this.#status = status;
    this.#statusText = init.statusText === undefined ? "" : String(init.statusText);
    this.#headers = new Headers(init.headers);
    this._initBody(extractBody(body, this.#headers));
  }
  static json(data, init = {}) {
    const headers = new Headers(init.headers);
    if (!headers.has("content-type")) headers.set("content-type", "application/json");
    return new Response(JSON.stringify(data), { ...init, headers });
  }
  static redirect(url, status = 302) {
    if (![301, 302, 303, 307, 308].includes(status)) throw new RangeError("invalid redirect status");
    return new Response(null, { status, headers: { location: new globalThis.URL(url).href } });
  }
  static _fromFetch(parts) {
    return new Response(kFromHost, parts);
  }
  static error() {
    const r = new Response(null, { status: 200 });
    r.#status = 0;
    r.#type = "error";
    return r;
  }
  get url() {
    return this.#url;
  }
  get redirected() {
    return this.#redirected;
  }
  get type() {
    return this.#type;
  }
  get status() {
    return this.#status;
  }
  get statusText() {
    return this.#statusText;
  }
  get ok() {
    return this.#status >= 200 && this.#status < 300;
  }
  get headers() {
    return this.#headers;
  }
  clone() {
    return new Response(this._bodyForHost(), {
      status: this.#status, statusText: this.#statusText, headers: this.#headers });
  }
}

