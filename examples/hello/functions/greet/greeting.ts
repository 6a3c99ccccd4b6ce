export function greeting(name: string): string {
  return `Hello, ${name}! It is ${new Date().toISOString()} (UTC).\n`;
}
