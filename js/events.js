// Event and EventTarget (the DOM standard's core, enough for AbortSignal and user code).
const kTarget = Symbol("flux.eventTarget");
const kStop = Symbol("flux.eventStop");

export class Event {
  #type;
  #bubbles;
  #cancelable;
  #defaultPrevented = false;
  constructor(type, init = {}) {
    if (arguments.length === 0) throw new TypeError("Event: the type argument is required");
    this.#type = String(type);
    this.#bubbles = !!init?.bubbles;
    this.#cancelable = !!init?.cancelable;
    this[kTarget] = null;
    this[kStop] = false;
  }
  get type() {
    return this.#type;
  }
  get target() {
    return this[kTarget];
  }
  get currentTarget() {
    return this[kTarget];
  }
  get srcElement() {
    return this[kTarget];
  }
  get bubbles() {
    return this.#bubbles;
  }
  get cancelable() {
    return this.#cancelable;
  }
  get defaultPrevented() {
    return this.#defaultPrevented;
  }
  get isTrusted() {
    return false;
  }
  get timeStamp() {
    return 0;
  }
  get eventPhase() {
    return this[kTarget] ? 2 : 0;
  }
  composedPath() {
    return this[kTarget] ? [this[kTarget]] : [];
  }
  preventDefault() {
    if (this.#cancelable) this.#defaultPrevented = true;
  }
  stopPropagation() {}
  stopImmediatePropagation() {
    this[kStop] = true;
  }
}

export class EventTarget {
  #listeners = new Map(); // type -> [{ callback, once }]

  addEventListener(type, callback, options) {
    if (callback === null || callback === undefined) return;
    const once = typeof options === "object" && options !== null && !!options.once;
    const signal = typeof options === "object" && options !== null ? options.signal : undefined;
    if (signal?.aborted) return;
    const name = String(type);
    let list = this.#listeners.get(name);
    if (!list) this.#listeners.set(name, (list = []));
    if (list.some((l) => l.callback === callback)) return;
    list.push({ callback, once });
    signal?.addEventListener("abort", () => this.removeEventListener(name, callback), { once: true });
  }

  removeEventListener(type, callback) {
    const list = this.#listeners.get(String(type));
    if (!list) return;
    const i = list.findIndex((l) => l.callback === callback);
    if (i >= 0) list.splice(i, 1);
  }

  dispatchEvent(event) {
    if (!(event instanceof Event)) throw new TypeError("dispatchEvent: expected an Event");
    event[kTarget] = this;
    const list = this.#listeners.get(event.type);
    if (list) {
      for (const listener of [...list]) {
        if (listener.once) this.removeEventListener(event.type, listener.callback);
        try {
          if (typeof listener.callback === "function") listener.callback.call(this, event);
          else listener.callback.handleEvent(event);
        } catch (error) {
          globalThis.console.error("uncaught error in an event listener:", error);
        }
        if (event[kStop]) break;
      }
    }
    return !event.defaultPrevented;
  }
}
