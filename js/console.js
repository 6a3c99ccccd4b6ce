// console.* over host.log, with a small inspector for non-string values.
export function inspect(value, depth = 0, seen = new Set()) {
  if (typeof value === "string") return depth === 0 ? value : JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "function") return `[Function ${value.name || "(anonymous)"}]`;
  if (typeof value === "symbol") return value.toString();
  if (value === null || typeof value !== "object") return String(value);
  if (value instanceof Error) return value.stack || `${value.name}: ${value.message}`;
  if (value instanceof Date) return value.toISOString();
  if (seen.has(value)) return "[Circular]";
  if (depth > 4) return Array.isArray(value) ? "[Array]" : "[Object]";
  seen.add(value);
  let out;
  if (Array.isArray(value)) {
    out = `[ ${value.map((v) => inspect(v, depth + 1, seen)).join(", ")} ]`;
    if (value.length === 0) out = "[]";
  } else if (value instanceof Map) {
    out = `Map(${value.size}) { ${[...value].map(([k, v]) => `${inspect(k, depth + 1, seen)} => ${inspect(v, depth + 1, seen)}`).join(", ")} }`;
  } else if (value instanceof Set) {
    out = `Set(${value.size}) { ${[...value].map((v) => inspect(v, depth + 1, seen)).join(", ")} }`;
  } else {
    const entries = Object.keys(value).map((k) => {
      const key = /^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k);
      return `${key}: ${inspect(value[k], depth + 1, seen)}`;
    });
    out = entries.length ? `{ ${entries.join(", ")} }` : "{}";
  }
  seen.delete(value);
  return out;
}

export function installConsole(define, host) {
  const format = (args) => args.map((a) => inspect(a)).join(" ");
  const console = {
    log: (...args) => host.log("log", format(args)),
    info: (...args) => host.log("info", format(args)),
    debug: (...args) => host.log("debug", format(args)),
    warn: (...args) => host.log("warn", format(args)),
    error: (...args) => host.log("error", format(args)),
    trace: (...args) => host.log("trace", format(args) + "\n" + new Error().stack),
  };
  define("console", console);
  return console;
}
