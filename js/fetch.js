// fetch(): the Fetch standard's entry point over the host's HTTP client (host.fetchStart,
// src/runtime/fetch_binding.cc). Bodies are buffered both ways. A fetch belongs to the request
// whose code called it and ends with that request at the latest.
import { DOMException } from "./dom_exception.js";
import { kTimeoutMs } from "./abort.js";
import { Request, Response } from "./http.js";

// What the fetch's span records when its signal fires.
function describeAbort(reason) {
  if (reason instanceof DOMException && reason.name === "TimeoutError") {
    return reason[kTimeoutMs] !== undefined ? `timeout after ${reason[kTimeoutMs]} ms` : "timeout";
  }
  return "aborted";
}

export function makeFetch(host) {
  return function fetch(input, init = undefined) {
    return new Promise((resolve, reject) => {
      let request;
      let started;
      try {
        request = input instanceof Request && init === undefined ? input : new Request(input, init ?? {});
        const signal = request.signal;
        if (signal?.aborted) {
          reject(signal.reason);
          return;
        }
        const protocol = request.url.slice(0, request.url.indexOf(":") + 1);
        if (protocol !== "http:" && protocol !== "https:") {
          throw new TypeError(`fetch: only http: and https: URLs are supported, not ${protocol}`);
        }
        started = host.fetchStart(request.method, request.url, request.headers._flat(),
          request._bodyForHost(), request.redirect);
      } catch (error) {
        reject(error);
        return;
      }
      const [id, promise] = started;
      const signal = request.signal;
      let onAbort = null;
      if (signal) {
        onAbort = () => {
          host.fetchAbort(id, signal.reason, describeAbort(signal.reason));
          reject(signal.reason);
        };
        signal.addEventListener("abort", onAbort, { once: true });
      }
      promise.then(
        (parts) => {
          if (onAbort) signal.removeEventListener("abort", onAbort);
          resolve(Response._fromFetch(parts));
        },
        (error) => {
          if (onAbort) signal.removeEventListener("abort", onAbort);
          reject(error);
        });
    });
  };
}
