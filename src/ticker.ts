// Periodic work shares timers: every task of the same period runs on one timer,
// so the process wakes once per period, not once per task. Each wake-up costs
// the idle collector more CPU than the work it does (rings found empty, counts
// unchanged), and the plugins' drains and checks would otherwise each wake it.

type Task = () => void;

/** The period of ring drains and table checks: the plugins share it, so they wake together. */
export const DRAIN_TICK_MS = 200;
/** The period of slower periodic work (scans, timeout walks, flushes). */
export const SECOND_TICK_MS = 1000;

interface Tick {
  timer: NodeJS.Timeout;
  tasks: Set<Task>;
}

const ticks = new Map<number, Tick>();

/** Runs `task` every `periodMs` with every other task of that period; returns what stops it. */
export function every(periodMs: number, task: Task): () => void {
  let tick = ticks.get(periodMs);
  if (!tick) {
    const tasks = new Set<Task>();
    const timer = setInterval(() => {
      // one task's exception is its own: the others still run (as with timers of their own)
      for (const t of [...tasks]) {
        try {
          t();
        } catch (err) {
          queueMicrotask(() => {
            throw err;
          });
        }
      }
    }, periodMs);
    // periodic work never keeps the process alive on its own
    timer.unref();
    tick = { timer, tasks };
    ticks.set(periodMs, tick);
  }
  const own = tick;
  // the same function twice is two tasks: wrap it
  const entry: Task = () => task();
  own.tasks.add(entry);
  return () => {
    if (!own.tasks.delete(entry) || own.tasks.size) return;
    clearInterval(own.timer);
    if (ticks.get(periodMs) === own) ticks.delete(periodMs);
  };
}

/** Periods with a timer running (tests). */
export function activePeriods(): number[] {
  return [...ticks.keys()].sort((a, b) => a - b);
}
