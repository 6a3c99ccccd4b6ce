// setTimeout / setInterval / queueMicrotask over the host's timers (asio on the worker loop).
export function installTimers(define, host, console) {
  const callbacks = new Map();
  let nextId = 1;

  function add(fn, ms, args, repeat) {
    if (typeof fn !== "function") throw new TypeError("timer callback must be a function");
    const id = nextId++;
    callbacks.set(id, { fn, args, repeat });
    host.setTimer(id, Number(ms) || 0, repeat);
    return id;
  }
  function clear(id) {
    if (callbacks.delete(id)) host.clearTimer(id);
  }
  define("setTimeout", (fn, ms, ...args) => add(fn, ms, args, false));
  define("setInterval", (fn, ms, ...args) => add(fn, ms, args, true));
  define("clearTimeout", clear);
  define("clearInterval", clear);
  define("queueMicrotask", (fn) => {
    if (typeof fn !== "function") throw new TypeError("queueMicrotask needs a function");
    Promise.resolve().then(fn).catch((e) => console.error("uncaught error in microtask:", e));
  });

  return {
    fire(id) {
      const t = callbacks.get(id);
      if (!t) return;
      if (!t.repeat) callbacks.delete(id);
      try {
        t.fn(...t.args);
      } catch (e) {
        console.error("uncaught error in timer:", e);
      }
    },
  };
}
