// URL and URLSearchParams. whatwg-url implements the standard exactly but costs ~90 µs per
// parse, too much for `new URL(req.url)` on every request. So URL takes a fast path for the
// common shape (an absolute http/https/ws/wss URL in printable ASCII, a plain host name or
// dotted IPv4, no credentials, no dot segments, nothing that needs percent-encoding) and
// computes the same fields whatwg-url would; anything else, every setter and every relative
// URL go through whatwg-url. URLSearchParams is the standard's
// application/x-www-form-urlencoded list, implemented here (small, and hot in handlers).
// url_test.mjs checks the fast path against whatwg-url.

const kDefaultPorts = { http: "80", https: "443", ws: "80", wss: "443" };
const kShape = /^([A-Za-z]+):\/\/([A-Za-z0-9.-]+)(?::([0-9]{1,5}))?(\/[^?#]*)?(?:\?([^#]+))?(?:#(.+))?$/;
const kPrintable = /^[\x21-\x7e]+$/;
const kPathRefused = /["<>`{}^\\]|(^|\/)(\.|%2e){1,2}(\/|$)/i;
const kQueryRefused = /["<>'\\]/;
const kFragmentRefused = /["<>`]/;
const kIpv4Part = /^(0|[1-9][0-9]{0,2})$/;

function fastHost(host) {
  const labels = host.split(".");
  const last = labels[labels.length - 1];
  if (/^[0-9]+$/.test(last) || /^0x/i.test(last)) {
    // Looks numeric: the standard parses it as IPv4; take only the canonical dotted form.
    if (labels.length !== 4) return null;
    for (const part of labels) {
      if (!kIpv4Part.test(part) || Number(part) > 255) return null;
    }
    return host;
  }
  for (const label of labels) {
    if (label === "" || label.startsWith("-") || label.endsWith("-")) return null;
    if (label.startsWith("xn--")) return null;  // punycode: needs IDNA validation
  }
  return host;
}

// The fields of `input` if it has the fast shape, else null.
function fastParse(input) {
  if (input.length > 2048 || !kPrintable.test(input)) return null;
  const m = kShape.exec(input);
  if (m === null) return null;
  const scheme = m[1].toLowerCase();
  const defaultPort = kDefaultPorts[scheme];
  if (defaultPort === undefined) return null;
  const hostname = fastHost(m[2].toLowerCase());
  if (hostname === null) return null;
  let port = m[3] ?? "";
  if (port !== "") {
    if ((port.length > 1 && port[0] === "0") || Number(port) > 65535) return null;
    if (port === defaultPort) port = "";
  }
  const pathname = m[4] ?? "/";
  if (kPathRefused.test(pathname)) return null;
  const query = m[5];
  if (query !== undefined && kQueryRefused.test(query)) return null;
  const fragment = m[6];
  if (fragment !== undefined && kFragmentRefused.test(fragment)) return null;
  const host = port === "" ? hostname : `${hostname}:${port}`;
  const search = query === undefined ? "" : `?${query}`;
  const hash = fragment === undefined ? "" : `#${fragment}`;
  return {
    href: `${scheme}://${host}${pathname}${search}${hash}`,
    origin: `${scheme}://${host}`,
    protocol: `${scheme}:`,
    username: "",
    password: "",
    host,
    hostname,
    port,
    pathname,
    search,
    hash,
  };
}

function specFields(spec) {
  return {
    href: spec.href,
    origin: spec.origin,
    protocol: spec.protocol,
    username: spec.username,
    password: spec.password,
    host: spec.host,
    hostname: spec.hostname,
    port: spec.port,
    pathname: spec.pathname,
    search: spec.search,
    hash: spec.hash,
  };
}

// --- application/x-www-form-urlencoded ---------------------------------------------------------

function percentDecode(text) {
  if (!text.includes("%")) return text;
  const bytes = new globalThis.TextEncoder().encode(text);
  const out = new Uint8Array(bytes.length);
  let n = 0;
  const hex = (b) => (b >= 48 && b <= 57 ? b - 48 : b >= 65 && b <= 70 ? b - 55 : b >= 97 && b <= 102 ? b - 87 : -1);
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 37 && i + 2 < bytes.length && hex(bytes[i + 1]) >= 0 && hex(bytes[i + 2]) >= 0) {
      out[n++] = hex(bytes[i + 1]) * 16 + hex(bytes[i + 2]);
      i += 2;
    } else {
      out[n++] = bytes[i];
    }
  }
  return new globalThis.TextDecoder().decode(out.subarray(0, n));
}

function parseForm(text) {
  const list = [];
  for (const part of text.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const name = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? "" : part.slice(eq + 1);
    list.push([percentDecode(name.replaceAll("+", " ")), percentDecode(value.replaceAll("+", " "))]);
  }
  return list;
}

const kFormSafe = /^[A-Za-z0-9*\-._]*$/;
function serializeFormPart(text) {
  if (kFormSafe.test(text)) return text;
  let out = "";
  for (const byte of new globalThis.TextEncoder().encode(text)) {
    if ((byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a) ||
        byte === 0x2a || byte === 0x2d || byte === 0x2e || byte === 0x5f) {
      out += String.fromCharCode(byte);
    } else if (byte === 0x20) {
      out += "+";
    } else {
      out += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
    }
  }
  return out;
}

// USVString: lone surrogates become U+FFFD, as WebIDL converts them.
function usv(value) {
  return String(value).toWellFormed?.() ?? String(value).replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "\ufffd");
}

export function makeUrlClasses(spec) {
  const kLink = Symbol("link");

  class URLSearchParams {
    #list = [];
    #url = null; // the URL these params belong to, updated on every change

    constructor(init = "") {
      if (init === kLink) return;
      if (init !== null && typeof init === "object") {
        if (typeof init[Symbol.iterator] === "function") {
          for (const pair of init) {
            const items = Array.from(pair);
            if (items.length !== 2) throw new TypeError("URLSearchParams: each pair must have two items");
            this.#list.push([usv(items[0]), usv(items[1])]);
          }
        } else {
          for (const key of Object.keys(init)) this.#list.push([usv(key), usv(init[key])]);
        }
      } else {
        let text = usv(init);
        if (text.startsWith("?")) text = text.slice(1);
        this.#list = parseForm(text);
      }
    }
    static _linked(url, search) {
      const params = new URLSearchParams(kLink);
      params.#url = url;
      params.#list = parseForm(search.startsWith("?") ? search.slice(1) : search);
      return params;
    }
    _reparse(search) {
      this.#list = parseForm(search.startsWith("?") ? search.slice(1) : search);
    }
    #update() {
      if (this.#url !== null) this.#url._setQueryFromParams(this.toString());
    }
    get size() {
      return this.#list.length;
    }
    append(name, value) {
      this.#list.push([usv(name), usv(value)]);
      this.#update();
    }
    delete(name, value) {
      name = usv(name);
      if (value === undefined) this.#list = this.#list.filter(([n]) => n !== name);
      else {
        value = usv(value);
        this.#list = this.#list.filter(([n, v]) => n !== name || v !== value);
      }
      this.#update();
    }
    get(name) {
      name = usv(name);
      const found = this.#list.find(([n]) => n === name);
      return found === undefined ? null : found[1];
    }
    getAll(name) {
      name = usv(name);
      return this.#list.filter(([n]) => n === name).map(([, v]) => v);
    }
    has(name, value) {
      name = usv(name);
      if (value === undefined) return this.#list.some(([n]) => n === name);
      value = usv(value);
      return this.#list.some(([n, v]) => n === name && v === value);
    }
    set(name, value) {
      name = usv(name);
      value = usv(value);
      const i = this.#list.findIndex(([n]) => n === name);
      if (i < 0) this.#list.push([name, value]);
      else {
        this.#list[i][1] = value;
        this.#list = this.#list.filter(([n], k) => k <= i || n !== name);
      }
      this.#update();
    }
    sort() {
      // Stable, by UTF-16 code units.
      this.#list = this.#list
        .map((pair, index) => [pair, index])
        .sort(([a, i], [b, j]) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : i - j))
        .map(([pair]) => pair);
      this.#update();
    }
    forEach(callback, thisArg) {
      for (const [name, value] of this.#list) callback.call(thisArg, value, name, this);
    }
    *entries() {
      for (let i = 0; i < this.#list.length; i++) yield [this.#list[i][0], this.#list[i][1]];
    }
    *keys() {
      for (const [name] of this.entries()) yield name;
    }
    *values() {
      for (const [, value] of this.entries()) yield value;
    }
    [Symbol.iterator]() {
      return this.entries();
    }
    toString() {
      return this.#list.map(([n, v]) => `${serializeFormPart(n)}=${serializeFormPart(v)}`).join("&");
    }
    get [Symbol.toStringTag]() {
      return "URLSearchParams";
    }
  }

  class URL {
    #f;
    #params = null;

    constructor(url, base) {
      const input = usv(url);
      if (base === undefined) {
        const fields = fastParse(input);
        if (fields !== null) {
          this.#f = fields;
          return;
        }
      }
      this.#f = specFields(base === undefined ? new spec.URL(input) : new spec.URL(input, usv(base)));
    }
    static canParse(url, base) {
      try {
        new URL(url, base);
        return true;
      } catch {
        return false;
      }
    }
    // Every change goes through whatwg-url: rare, and exact.
    #change(apply) {
      const s = new spec.URL(this.#f.href);
      apply(s);
      this.#f = specFields(s);
    }
    _setQueryFromParams(serialized) {
      this.#change((s) => {
        s.search = serialized;
      });
    }
    get href() {
      return this.#f.href;
    }
    set href(value) {
      const next = new URL(value);
      this.#f = next.#f;
      this.#params?._reparse(this.#f.search);
    }
    get origin() {
      return this.#f.origin;
    }
    get protocol() {
      return this.#f.protocol;
    }
    set protocol(v) {
      this.#change((s) => { s.protocol = v; });
    }
    get username() {
      return this.#f.username;
    }
    set username(v) {
      this.#change((s) => { s.username = v; });
    }
    get password() {
      return this.#f.password;
    }
    set password(v) {
      this.#change((s) => { s.password = v; });
    }
    get host() {
      return this.#f.host;
    }
    set host(v) {
      this.#change((s) => { s.host = v; });
    }
    get hostname() {
      return this.#f.hostname;
    }
    set hostname(v) {
      this.#change((s) => { s.hostname = v; });
    }
    get port() {
      return this.#f.port;
    }
    set port(v) {
      this.#change((s) => { s.port = v; });
    }
    get pathname() {
      return this.#f.pathname;
    }
    set pathname(v) {
      this.#change((s) => { s.pathname = v; });
    }
    get search() {
      return this.#f.search;
    }
    set search(v) {
      this.#change((s) => { s.search = v; });
      this.#params?._reparse(this.#f.search);
    }
    get searchParams() {
      return (this.#params ??= URLSearchParams._linked(this, this.#f.search));
    }
    get hash() {
      return this.#f.hash;
    }
    set hash(v) {
      this.#change((s) => { s.hash = v; });
    }
    toString() {
      return this.#f.href;
    }
    toJSON() {
      return this.#f.href;
    }
    get [Symbol.toStringTag]() {
      return "URL";
    }
  }

  return { URL, URLSearchParams };
}
