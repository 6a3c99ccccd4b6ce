// The hello function on Node's http module, for bench/hello.sh. Usage: node node-hello.mjs [port]
import http from "node:http";

const port = Number(process.argv[2] ?? process.env.PORT ?? 18082);
const body = "Hello, world!";

const server = http.createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/plain", "content-length": Buffer.byteLength(body) });
  res.end(body);
});
server.listen(port, "127.0.0.1");

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
