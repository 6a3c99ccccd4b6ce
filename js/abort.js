// AbortController and AbortSignal (the DOM standard), with AbortSignal.abort/timeout/any.
import { DOMException } from "./dom_exception.js";
import { Event, EventTarget } from "./events.js";

const kCreate = Symbol("flux.createSignal");
const kAbort = Symbol("flux.abort");
// On the reason of AbortSignal.timeout(ms): the ms, so that a fetch's span can say
// "timeout after 200 ms".
export const kTimeoutMs = Symbol("flux.timeoutMs");

export class AbortSignal extends EventTarget {
  #aborted = false;
  #reason = undefined;
  #onabort = null;

  constructor(key) {
    if (key !== kCreate) throw new TypeError("Illegal constructor: use new AbortController()");
    super();
  }

  static abort(reason) {
    const signal = new AbortSignal(kCreate);
    signal[kAbort](reason);
    return signal;
  }

  static timeout(ms) {
    const delay = Number(ms);
    if (!Number.isFinite(delay) || delay < 0 || delay > Number.MAX_SAFE_INTEGER) {
      throw new TypeError(`AbortSignal.timeout: ${ms} is not a non-negative number of ms`);
    }
    const signal = new AbortSignal(kCreate);
    const whole = Math.trunc(delay);
    globalThis.setTimeout(() => {
      const reason = new DOMException(`Signal timed out after ${whole} ms.`, "TimeoutError");
      reason[kTimeoutMs] = whole;
      signal[kAbort](reason);
    }, whole);
    return signal;
  }

  static any(signals) {
    const signal = new AbortSignal(kCreate);
    const list = [...signals];
    for (const s of list) {
      if (!(s instanceof AbortSignal)) throw new TypeError("AbortSignal.any: expected AbortSignals");
      if (s.aborted) {
        signal[kAbort](s.reason);
        return signal;
      }
    }
    for (const s of list) s.addEventListener("abort", () => signal[kAbort](s.reason), { once: true });
    return signal;
  }

  get aborted() {
    return this.#aborted;
  }
  get reason() {
    return this.#reason;
  }
  get onabort() {
    return this.#onabort;
  }
  set onabort(handler) {
    this.#onabort = typeof handler === "function" ? handler : null;
  }
  throwIfAborted() {
    if (this.#aborted) throw this.#reason;
  }

  [kAbort](reason) {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason =
      reason === undefined ? new DOMException("The signal has been aborted", "AbortError") : reason;
    const event = new Event("abort");
    if (this.#onabort) {
      try {
        this.#onabort.call(this, event);
      } catch (error) {
        globalThis.console.error("uncaught error in onabort:", error);
      }
    }
    this.dispatchEvent(event);
  }
}

export class AbortController {
  #signal = new AbortSignal(kCreate);
  get signal() {
    return this.#signal;
  }
  abort(reason) {
    this.#signal[kAbort](reason);
  }
}
