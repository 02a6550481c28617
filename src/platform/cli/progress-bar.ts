/** A one-line progress bar with rate and ETA, for a person at a terminal (redrawn at most every 100 ms). */

export interface ProgressBar {
  /** One more tenant finished. */
  tick(failed: boolean): void;
  /** More tenants to do (a wave of stragglers). */
  grow(by: number): void;
  /** Draws the final state and ends the line. */
  end(): void;
}

const WIDTH = 28;

/** Formats seconds as `42s`, `3m05s`, `1h02m`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Creates a bar over `total` items that writes through `draw` (a line without its newline; `final` ends it). */
export function createProgressBar(total: number, draw: (line: string, final: boolean) => void, now = () => Date.now()): ProgressBar {
  const started = now();
  let done = 0;
  let failed = 0;
  let last = 0;
  const line = () => {
    const share = total ? done / total : 1;
    const filled = Math.round(share * WIDTH);
    const seconds = (now() - started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    const eta = rate > 0 ? formatDuration((total - done) / rate) : '?';
    return `[${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ${done}/${total} ${Math.floor(share * 100)}% · ${rate.toFixed(0)}/s · ETA ${eta}${failed ? ` · failed ${failed}` : ''}`;
  };
  return {
    tick(f) {
      done++;
      if (f) failed++;
      if (now() - last >= 100) {
        last = now();
        draw(line(), false);
      }
    },
    grow(by) {
      total += by;
    },
    end() {
      draw(line(), true);
    },
  };
}
