// TextEncoder / TextDecoder (UTF-8, through the host) and atob / btoa.
import { DOMException } from "./dom_exception.js";

export function installEncoding(define, host) {
  class TextEncoder {
    get encoding() {
      return "utf-8";
    }
    encode(input = "") {
      return host.utf8Encode(String(input));
    }
    encodeInto(source, destination) {
      const bytes = host.utf8Encode(String(source));
      let written = Math.min(bytes.length, destination.length);
      // Do not cut a multi-byte sequence in half.
      while (written > 0 && written < bytes.length && (bytes[written] & 0xc0) === 0x80) written--;
      destination.set(bytes.subarray(0, written));
      // UTF-16 code units of `source` that those bytes encode.
      let read = 0;
      for (let i = 0; i < written; ) {
        const b = bytes[i];
        const n = b < 0x80 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4;
        i += n;
        read += n === 4 ? 2 : 1;
      }
      return { read, written };
    }
  }
  class TextDecoder {
    #fatal;
    #ignoreBOM;
    constructor(label = "utf-8", options = {}) {
      const l = String(label).trim().toLowerCase();
      if (l !== "utf-8" && l !== "utf8" && l !== "unicode-1-1-utf-8") {
        throw new RangeError(`TextDecoder: encoding "${label}" is not supported (only utf-8)`);
      }
      this.#fatal = Boolean(options.fatal);
      this.#ignoreBOM = Boolean(options.ignoreBOM);
    }
    get encoding() {
      return "utf-8";
    }
    get fatal() {
      return this.#fatal;
    }
    get ignoreBOM() {
      return this.#ignoreBOM;
    }
    decode(input) {
      if (input === undefined) return "";
      let s = host.utf8Decode(input, this.#fatal);
      if (!this.#ignoreBOM && s.charCodeAt(0) === 0xfeff) s = s.slice(1);
      return s;
    }
  }
  const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  function btoa(input) {
    const s = String(input);
    let out = "";
    for (let i = 0; i < s.length; i += 3) {
      const a = s.charCodeAt(i), b = s.charCodeAt(i + 1), c = s.charCodeAt(i + 2);
      if (a > 255 || b > 255 || c > 255) {
        throw new DOMException("btoa: the string contains characters outside of Latin1", "InvalidCharacterError");
      }
      const n = (a << 16) | ((b || 0) << 8) | (c || 0);
      out += chars[n >> 18] + chars[(n >> 12) & 63] +
        (i + 1 < s.length ? chars[(n >> 6) & 63] : "=") + (i + 2 < s.length ? chars[n & 63] : "=");
    }
    return out;
  }
  function atob(input) {
    let s = String(input).replace(/[\t\n\f\r ]/g, "");
    if (s.length % 4 === 0) s = s.replace(/==?$/, "");
    if (s.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(s)) {
      throw new DOMException("atob: the string is not correctly encoded", "InvalidCharacterError");
    }
    let out = "", bits = 0, acc = 0;
    for (const ch of s) {
      acc = (acc << 6) | chars.indexOf(ch);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out += String.fromCharCode((acc >> bits) & 255);
      }
    }
    return out;
  }
  define("TextEncoder", TextEncoder);
  define("TextDecoder", TextDecoder);
  define("btoa", btoa);
  define("atob", atob);
}
