# workerd config for bench/hello.sh: one worker answering "Hello, world!" on every path.
# bench/hello.sh overrides the listen address with --socket-addr http=127.0.0.1:<port>.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [ (name = "main", worker = .helloWorker) ],
  sockets = [ (name = "http", address = "127.0.0.1:18081", http = (), service = "main") ],
);

const helloWorker :Workerd.Worker = (
  modules = [ (name = "worker", esModule = embed "hello-worker.js") ],
  compatibilityDate = "2024-09-23",
);
