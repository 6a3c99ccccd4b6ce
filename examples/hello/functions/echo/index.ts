// POST /echo {"text": "..."} -> the text, reversed: the defineFunction style, input = JSON body.
import { defineFunction } from "@flux/functions";

export default defineFunction({
  name: "echo",
  handler: async ({ input }: { input: { text?: string } }) => {
    if (typeof input.text !== "string") {
      return Response.json({ error: "send {\"text\": \"...\"}" }, { status: 400 });
    }
    return { text: input.text, reversed: [...input.text].reverse().join("") };
  },
});
