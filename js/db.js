// ctx.db: the request's database handle. Every call runs in the request's one transaction
// (opened at the first call; committed when the handler answers below 500, rolled back
// otherwise). Values are bound parameters, never SQL text; table and column names of
// insert/update/delete are checked against the catalogue by the host.
export class DatabaseError extends Error {
  constructor(message, code, status) {
    super(message);
    this.name = "DatabaseError";
    this.code = code; // PostgreSQL SQLSTATE, or a flux code ("unavailable", "invalid_argument")
    this.status = status; // what the request answers if this error is not caught
  }
}

function whereEntries(where, what) {
  if (where === null || typeof where !== "object" || Array.isArray(where)) {
    throw new TypeError(`ctx.db.${what}: where must be an object of column equalities`);
  }
  return Object.entries(where);
}

function setEntries(values, what) {
  if (values === null || typeof values !== "object" || Array.isArray(values)) {
    throw new TypeError(`ctx.db.${what}: expected an object of column values`);
  }
  return Object.entries(values).filter(([, v]) => v !== undefined);
}

export function makeDb(host, slot) {
  const db = {
    query(sql, params = []) {
      if (typeof sql !== "string") throw new TypeError("ctx.db.query: sql must be a string");
      if (!Array.isArray(params)) throw new TypeError("ctx.db.query: params must be an array");
      return host.dbQuery(slot, sql, params).then((r) => r.rows);
    },
    async queryOne(sql, params = []) {
      const rows = await db.query(sql, params);
      return rows.length > 0 ? rows[0] : null;
    },
    insert(table, rowOrRows) {
      const many = Array.isArray(rowOrRows);
      const rows = (many ? rowOrRows : [rowOrRows]).map((r) => setEntries(r, "insert"));
      return host.dbInsert(slot, String(table), rows).then((r) => (many ? r.rows : r.rows[0]));
    },
    update(table, where, set) {
      return host.dbUpdate(slot, String(table), whereEntries(where, "update"), setEntries(set, "update"))
        .then((r) => ({ count: r.count, rows: r.rows }));
    },
    delete(table, where) {
      return host.dbDelete(slot, String(table), whereEntries(where, "delete"))
        .then((r) => ({ count: r.count, rows: r.rows }));
    },
    async transaction(fn) {
      if (typeof fn !== "function") throw new TypeError("ctx.db.transaction needs a function");
      await host.dbSavepoint(slot, "begin");
      let result;
      try {
        result = await fn(db);
      } catch (error) {
        await host.dbSavepoint(slot, "rollback");
        throw error;
      }
      await host.dbSavepoint(slot, "release");
      return result;
    },
  };
  return db;
}
