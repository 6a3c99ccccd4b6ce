// GET /guestbook -> the latest greetings, read with a parameterised query.
export default async function handler(req: Request, ctx: any) {
  const limit = Number(new URL(req.url).searchParams.get("limit") ?? 20);
  return ctx.db.query("select id, name from greetings order by id desc limit $1", [limit]);
}
