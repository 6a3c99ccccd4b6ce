// Differential test: js/url.js must give exactly what whatwg-url gives, on the fast path and
// off it. Run by CTest with node (`node js/url_test.mjs`); exits non-zero on any difference.
import { createRequire } from "node:module";
import { makeUrlClasses } from "./url.js";

const require = createRequire(import.meta.url);
const spec = require("whatwg-url");
const { URL, URLSearchParams } = makeUrlClasses(spec);

const fields = ["href", "origin", "protocol", "username", "password", "host", "hostname", "port",
  "pathname", "search", "hash"];
let failures = 0;
let checked = 0;

function outcome(make) {
  try {
    const u = make();
    return Object.fromEntries(fields.map((f) => [f, u[f]]));
  } catch (e) {
    return { threw: e instanceof TypeError ? "TypeError" : String(e) };
  }
}

function check(input, base) {
  checked++;
  const want = outcome(() => (base === undefined ? new spec.URL(input) : new spec.URL(input, base)));
  const got = outcome(() => (base === undefined ? new URL(input) : new URL(input, base)));
  if (JSON.stringify(want) !== JSON.stringify(got)) {
    failures++;
    console.error(`MISMATCH for ${JSON.stringify(input)}${base ? ` (base ${base})` : ""}\n  want ${JSON.stringify(want)}\n  got  ${JSON.stringify(got)}`);
  }
}

const corpus = [
  "http://127.0.0.1:4000/hello?name=Flux", "http://localhost/", "http://localhost", "HTTP://EXAMPLE.com/A/b",
  "https://example.com:443/x", "http://example.com:80/", "http://example.com:8080/p?q=1#frag",
  "http://example.com:080/", "http://example.com:65535/", "http://example.com:65536/", "ws://a.b/c", "wss://a.b:443",
  "http://a.b/./c", "http://a.b/../c", "http://a.b/x/%2e%2E/y", "http://a.b/x/.%2e/y", "http://a.b/.hidden/..x",
  "http://a.b/a b", "http://a.b/a\"b", "http://a.b/a<b>", "http://a.b/a`b", "http://a.b/{x}", "http://a.b/a^b|c",
  "http://a.b/?q='x'", "http://a.b/?q=\"x\"", "http://a.b/?q=<x>", "http://a.b/?", "http://a.b/#", "http://a.b/?#",
  "http://a.b/#a`b", "http://a.b/#a b", "http://a.b/%zz", "http://a.b/%41", "http://a.b/?%zz=%41",
  "http://a.b\\c/d", "http://a.b/c\\d", "http://user:pw@a.b/", "http://@a.b/", "http://a..b/", "http://.a.b/",
  "http://a.b./", "http://-a.b/", "http://a-.b/", "http://xn--nxasmq6b.com/", "http://xn--a.com/",
  "http://1.2.3.4/", "http://1.2.3/", "http://01.2.3.4/", "http://0x7f.0.0.1/", "http://256.1.1.1/",
  "http://1.2.3.4.5/", "http://a.1/", "http://1.a/", "http://a.0x1/", "http://0/", "http://999999999999/",
  "http://[::1]:8080/", "http://ex ample.com/", "http://example.com/\u00e9", "http://ex\u00e4mple.com/",
  "http://EXAMPLE.COM:8080/A%2fB?X=Y#Z", "ftp://a.b/", "file:///etc/passwd", "mailto:x@y.z", "javascript:alert(1)",
  "http:/a.b/", "http:a.b/", "http://", "", "  http://a.b/  ", "http://a.b/\t", "//a.b/", "/relative",
  "https://example.com/search?q=a+b&x=%20y&z=%E2%82%AC", "http://a.b/path;params?x=1", "http://a.b/~user/",
  "http://a.b/" + "x".repeat(3000), "http://a.b/a/b/c/d/e/f/g/h/i/j", "http://a.b:/", "http://a.b:0/",
  "http://a.b/a//b", "http://a.b//", "HTTPS://A.B:443/", "wss://a.b:80/", "ws://a.b:80/", "http://a_b.c/",
  "http://a.b/?a=1&a=2&b", "http://a.b/#x#y", "http://a.b/?x?y", "https://a.b/\ud800",
];
for (const input of corpus) check(input);
for (const [input, base] of [["/x?y", "http://a.b/c"], ["../x", "http://a.b/c/d"], ["?q", "http://a.b/p"],
  ["http://c.d/", "http://a.b/"], ["x", "not a url"]]) check(input, base);

// Random mutations of fast-shaped URLs: characters the fast path must refuse or handle.
const alphabet = ["a", "Z", "0", "9", ".", "-", "/", "?", "#", "%", "%2e", "..", "=", "&", "+", ":", "@",
  "\\", " ", "'", "\"", "<", ">", "`", "{", "}", "^", "|", "~", "\u00e9", "xn--", "0x", "255", "256"];
let seed = 42;
const random = (n) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
for (let i = 0; i < 20000; i++) {
  let s = ["http://", "https://", "ws://", "HTTP://"][random(4)];
  const parts = 1 + random(12);
  for (let k = 0; k < parts; k++) s += alphabet[random(alphabet.length)];
  check(s);
}

// URLSearchParams: parsing, serialisation, mutation, and the link to its URL.
function params(p) {
  return JSON.stringify([...p]) + " " + p.toString();
}
for (const init of ["a=1&b=2", "?a=1", "a=%zz&b=%41%42", "a+b=c+d", "=x&y=&&z", "%E2%82%AC=%F0%9F%98%80",
  "a=%C3%28", "x=1&x=2&x=3"]) {
  checked++;
  const want = params(new spec.URLSearchParams(init));
  const got = params(new URLSearchParams(init));
  if (want !== got) { failures++; console.error(`PARAMS MISMATCH ${init}\n  want ${want}\n  got  ${got}`); }
}
{
  checked++;
  const ops = (P) => {
    const p = new P("b=2&a=1&a=3");
    p.append("sp ace", "x y&z");
    p.set("a", "9");
    p.delete("b");
    p.append("€", "\u00e9");
    p.sort();
    return params(p) + " " + p.has("a") + " " + p.has("a", "1") + " " + p.getAll("a");
  };
  const want = ops(spec.URLSearchParams);
  const got = ops(URLSearchParams);
  if (want !== got) { failures++; console.error(`PARAMS OPS MISMATCH\n  want ${want}\n  got  ${got}`); }
}
{
  checked++;
  const linked = (U) => {
    const u = new U("http://a.b/p?x=1#h");
    const log = [u.searchParams.get("x")];
    u.searchParams.append("y", "2 3");
    log.push(u.href, u.search);
    u.searchParams.delete("x");
    u.searchParams.delete("y");
    log.push(u.href);
    u.search = "?z=4";
    log.push(u.searchParams.get("z"), u.href);
    u.pathname = "/q r";
    u.hash = "";
    log.push(u.href);
    return JSON.stringify(log);
  };
  const want = linked(spec.URL);
  const got = linked(URL);
  if (want !== got) { failures++; console.error(`LINK MISMATCH\n  want ${want}\n  got  ${got}`); }
}

console.log(`url_test: ${checked - failures} passed, ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
