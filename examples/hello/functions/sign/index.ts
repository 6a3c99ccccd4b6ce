// POST /sign {"name": "Ada"} -> the stored row. A write through ctx.db: Flux logs it in the
// mutation log (flux state history greetings --id 1) in the same transaction.
export default async function handler(req: Request, ctx: any) {
  const { name } = await req.json();
  if (typeof name !== "string" || name.length === 0) {
    return Response.json({ error: "send {\"name\": \"...\"}" }, { status: 400 });
  }
  return Response.json(await ctx.db.insert("greetings", { name }), { status: 201 });
}
