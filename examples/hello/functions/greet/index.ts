// GET /greet/:name -> a Response built by hand, with a route parameter.
import { greeting } from "./greeting";

export default async function handler(_req: Request, ctx: { params: { name: string } }) {
  return new Response(greeting(ctx.params.name), {
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}
