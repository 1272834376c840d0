// Go-style durations as DataKit users write them: "5s", "1m30s", "500ms", "2.5h".
const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const PART = /(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;

/** Milliseconds, or throws an Error whose message says what is wrong. */
export function parseDuration(text: string): number {
  const s = text.trim();
  if (!s) throw new Error('empty duration');
  if (s.startsWith('-')) throw new Error(`negative duration "${text}"`);
  let ms = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < s.length) {
    const start = PART.lastIndex;
    const m = PART.exec(s);
    if (!m) {
      const rest = s.slice(start);
      throw new Error(
        /^\d+(\.\d+)?$/.test(rest)
          ? `duration "${text}" needs a unit (ns, us, ms, s, m, h)`
          : `invalid duration "${text}"`,
      );
    }
    ms += Number(m[1]) * UNIT_MS[m[2]];
  }
  if (ms <= 0) throw new Error(`duration "${text}" must be greater than zero`);
  return ms;
}
