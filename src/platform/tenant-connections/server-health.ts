/**
 * Whether one MySQL server counts as down for this process, decided by probes (a fresh connection that logs in and
 * pings, bounded by TENANT_CONNECT_TIMEOUT_MS) rather than by any single connection's failure:
 * - `suspect()`: something looked wrong (a connection reset while switching, a statement unanswered for
 *   TENANT_PROBE_AFTER_MS): one probe runs (never two at once); only if it fails is the server marked down.
 *   A single dead connection is not a down server.
 * - `markDown()`: a wait on the server ran out (a fresh connection refused or unanswered, a COM_CHANGE_USER or a
 *   statement unanswered past its bound): the server is down now.
 * While down, the owner fails fast (503 with Retry-After) and a probe runs every `retryAfterMs` until one succeeds:
 * after a freeze or a restart the tenants come back without anyone waiting on the hung server.
 */

export interface ServerHealthOptions {
  /** How often a down server is probed again (TENANT_RETRY_AFTER_MS); 0: never marked down. */
  retryAfterMs: number;
  /** Logs in with a fresh connection and pings; rejects when the server does not answer within its bound. */
  probe(): Promise<void>;
  /** The server just went down: fail the queue and the sessions in flight. */
  onDown(cause: Error): void;
  onUp?(): void;
}

export interface ServerHealth {
  isDown(): boolean;
  /** Until the next probe of a down server, in ms (at least 1). */
  retryAfterMs(): number;
  suspect(): void;
  markDown(cause: Error): void;
  /** Probes made, and those that failed. */
  stats(): { probes: number; probeFailures: number; downs: number };
  close(): void;
}

export function createServerHealth(opts: ServerHealthOptions): ServerHealth {
  let down = false;
  let probing = false;
  let closed = false;
  let nextProbeAt = 0;
  let timer: NodeJS.Timeout | undefined;
  const counters = { probes: 0, probeFailures: 0, downs: 0 };

  function scheduleProbe(): void {
    if (closed || timer) return;
    nextProbeAt = Date.now() + opts.retryAfterMs;
    timer = setTimeout(() => {
      timer = undefined;
      probe();
    }, opts.retryAfterMs);
    timer.unref();
  }

  function probe(): void {
    if (probing || closed) return;
    probing = true;
    counters.probes++;
    opts.probe().then(
      () => {
        probing = false;
        if (!down || closed) return;
        down = false;
        opts.onUp?.();
      },
      (err: Error) => {
        probing = false;
        counters.probeFailures++;
        if (closed) return;
        if (down) scheduleProbe();
        else markDown(err);
      },
    );
  }

  function markDown(cause: Error): void {
    if (closed || opts.retryAfterMs <= 0) return;
    scheduleProbe(); // first: the 503s answered from onDown carry the time until this probe
    if (!down) {
      down = true;
      counters.downs++;
      opts.onDown(cause);
    }
  }

  return {
    isDown: () => down,
    retryAfterMs: () => (down ? Math.max(1, nextProbeAt - Date.now()) : opts.retryAfterMs),
    suspect() {
      if (!down && opts.retryAfterMs > 0) probe();
    },
    markDown,
    stats: () => ({ ...counters }),
    close() {
      closed = true;
      clearTimeout(timer);
      timer = undefined;
    },
  };
}
