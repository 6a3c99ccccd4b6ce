// The hello function as a workerd (Cloudflare Workers) module, for bench/hello.sh.
export default {
  async fetch(req) {
    return new Response("Hello, world!", { headers: { "content-type": "text/plain" } });
  },
};
