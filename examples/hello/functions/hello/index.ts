// GET /hello?name=Flux -> {"message": "Hello, Flux!", "requestId": "..."}
export default async function handler(req: Request, ctx: { requestId: string }) {
  const name = new URL(req.url).searchParams.get("name") ?? "world";
  return { message: `Hello, ${name}!`, requestId: ctx.requestId };
}
