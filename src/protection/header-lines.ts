/**
 * How many times a header line named `name` (lower case) came in. Node keeps only the first
 * line of some headers (Authorization, Content-Type), so a request repeating one is ambiguous;
 * its raw list is the only place that shows it. Names are compared by length first, so the
 * usual request lower-cases nothing.
 */
export function headerLines (rawHeaders: readonly string[], name: string): number {
  let lines = 0
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const raw = rawHeaders[i] as string
    if (raw.length === name.length && raw.toLowerCase() === name) lines++
  }
  return lines
}
