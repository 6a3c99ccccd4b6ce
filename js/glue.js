// The runtime's JS glue: installs the Web APIs a handler sees on globalThis and returns the
// entry points the host calls (dispatch, fireTimer). Bundled by esbuild into the flux binary
// and run once in every function context. `host` holds the native functions (host_api.cc).
import { AbortController, AbortSignal } from "./abort.js";
import { installConsole } from "./console.js";
import { DOMException } from "./dom_exception.js";
import { DatabaseError, makeDb } from "./db.js";
import { installEncoding } from "./encoding.js";
import { Event, EventTarget } from "./events.js";
import { makeFetch } from "./fetch.js";
import { Headers, Request, Response, HttpError } from "./http.js";
import { installTimers } from "./timers.js";
import { makeUrlClasses } from "./url.js";

const kDefinition = Symbol("flux.definition");

export function install(host, env) {
  const g = globalThis;
  const define = (name, value) =>
    Object.defineProperty(g, name, { value, writable: true, configurable: true, enumerable: false });

  define("self", g);
  define("DOMException", DOMException);
  installEncoding(define, host);
  // whatwg-url needs TextEncoder while it loads: required (bundled) after installEncoding.
  const { URL, URLSearchParams } = makeUrlClasses(require("whatwg-url"));
  define("URL", URL);
  define("URLSearchParams", URLSearchParams);
  define("Headers", Headers);
  define("Request", Request);
  define("Response", Response);
  define("Event", Event);
  define("EventTarget", EventTarget);
  define("AbortController", AbortController);
  define("AbortSignal", AbortSignal);
  define("fetch", makeFetch(host));
  const console = installConsole(define, host);
  const timers = installTimers(define, host, console);
  define("structuredClone", (value) => {
    try {
      return host.structuredClone(value);
    } catch (error) {
      throw new DOMException(error.message, "DataCloneError");
    }
  });

  // Time and randomness go through the host: injectable, and journaled for replay.
  const RealDate = Date;
  function FluxDate(...args) {
    if (!new.target) return new RealDate(host.now()).toString();
    return args.length === 0 ? new RealDate(host.now()) : new RealDate(...args);
  }
  FluxDate.prototype = RealDate.prototype;
  Object.defineProperty(RealDate.prototype, "constructor", { value: FluxDate });
  FluxDate.now = () => Math.floor(host.now());
  FluxDate.parse = RealDate.parse;
  FluxDate.UTC = RealDate.UTC;
  define("Date", FluxDate);
  Math.random = () => host.random();

  const crypto = {
    getRandomValues(view) {
      if (!ArrayBuffer.isView(view) || view instanceof Float32Array || view instanceof Float64Array) {
        throw new TypeError("crypto.getRandomValues: expected an integer typed array");
      }
      if (view.byteLength > 65536) {
        throw new DOMException("crypto.getRandomValues: at most 65536 bytes at a time",
          "QuotaExceededError");
      }
      host.randomFill(view);
      return view;
    },
    randomUUID() {
      return host.randomUUID();
    },
  };
  define("crypto", crypto);

  const frozenEnv = Object.freeze({ ...env });

  function defineFunction(definition) {
    if (!definition || typeof definition.handler !== "function") {
      throw new TypeError("defineFunction({ name, handler }) needs a handler function");
    }
    return { [kDefinition]: true, name: definition.name, handler: definition.handler };
  }

  // ctx.span(name, fn): a span of the user's around fn; the spans fn starts (db, fetch,
  // nested ctx.span) are its children, also after `await`. Resolves to fn's value; an error
  // fn throws or rejects with is recorded on the span and passed on.
  function span(slot, name, fn) {
    if (typeof fn !== "function") throw new TypeError("ctx.span(name, fn): fn must be a function");
    const index = host.spanEnter(slot, String(name));
    let result;
    try {
      result = fn();
    } catch (error) {
      host.spanLeave(slot, index);
      host.spanEnd(slot, index, true, error);
      return Promise.reject(error);
    }
    host.spanLeave(slot, index);
    return Promise.resolve(result).then(
      (value) => {
        host.spanEnd(slot, index, false);
        return value;
      },
      (error) => {
        host.spanEnd(slot, index, true, error);
        throw error;
      });
  }

  // A class, not an object literal: a literal's `get db()` is defined anew for every request
  // (a runtime call, ~4k instructions). log and span stay own functions, so that they work
  // destructured (`const { span } = ctx`); db is made on first use.
  class Ctx {
    #slot;
    #db;
    constructor(slot, requestId, params) {
      this.requestId = requestId;
      this.params = params;
      this.env = frozenEnv;
      this.log = (...args) => console.log(...args);
      this.span = (name, fn) => span(slot, name, fn);
      this.#slot = slot;
    }
    get db() {
      return (this.#db ??= makeDb(host, this.#slot));
    }
  }

  function makeCtx(slot, requestId, params) {
    return new Ctx(slot, requestId, params);
  }

  async function definitionInput(req) {
    if (req.method === "GET" || req.method === "HEAD" || req.method === "DELETE") {
      const input = {};
      for (const [k, v] of new URL(req.url).searchParams) {
        input[k] = k in input ? [].concat(input[k], v) : v;
      }
      return input;
    }
    const text = await req.text();
    if (text === "") return {};
    try {
      return JSON.parse(text);
    } catch {
      throw new HttpError(400, "request body is not valid JSON");
    }
  }

  function respond(slot, value) {
    if (value instanceof Response) {
      host.complete(slot, value.status, value.headers._flat(), value._bodyForHost());
    } else if (typeof value === "string") {
      host.complete(slot, 200, ["content-type", "text/plain;charset=UTF-8"], value);
    } else if (value === undefined || value === null) {
      host.complete(slot, 204, [], null);
    } else {
      host.complete(slot, 200, ["content-type", "application/json"], JSON.stringify(value));
    }
  }

  function fail(slot, error) {
    const status = error instanceof HttpError || error instanceof DatabaseError ? error.status : 500;
    host.fail(slot, error, status);
  }

  function dispatch(slot, handler, method, url, headers, body, requestId, params) {
    let result;
    try {
      const req = Request._fromHost(method, url, headers, body);
      const ctx = makeCtx(slot, requestId, params);
      if (typeof handler === "function") {
        result = handler(req, ctx);
      } else if (handler && handler[kDefinition]) {
        result = definitionInput(req).then((input) => handler.handler({ input, ctx, req }));
      } else {
        throw new TypeError(
          "the default export must be a handler function or defineFunction({ handler })");
      }
    } catch (error) {
      fail(slot, error);
      return;
    }
    if (result !== null && typeof result === "object" && typeof result.then === "function") {
      result.then((value) => respond(slot, value), (error) => fail(slot, error))
        .catch((error) => fail(slot, error));
    } else {
      try {
        respond(slot, result);
      } catch (error) {
        fail(slot, error);
      }
    }
  }

  define("DatabaseError", DatabaseError);
  const makeDatabaseError = (message, code, status) => new DatabaseError(message, code, status);

  return { dispatch, fireTimer: timers.fire, defineFunction, makeDatabaseError };
}
