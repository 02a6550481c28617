/**
 * A bound on waiting for a MySQL server's answer on one connection. mysql2 bounds only the handshake (connectTimeout):
 * a statement or a COM_CHANGE_USER sent to a server that accepts TCP but never answers (frozen, SIGSTOPped, a
 * half-dead network path) would wait for as long as TCP keeps the socket, which on a live peer host is forever.
 */

/** What a connection has in flight: each entry fails its command now (the server is down, the connection is going). */
export type InFlight = Set<(err: Error) => void>;

export interface AnswerDeadline {
  /** Past this the caller gets `expired()`'s error and the connection is given up. */
  ms: number;
  /** Called once if no answer came within `stallMs` (< ms): time to ask whether the server is alive at all. */
  stallMs?: number;
  onStall?(): void;
  /** The error of a command unanswered after `ms` (called once, after the caller's callback has been failed). */
  expired(): Error;
  /** Gives the connection up (it may still be sending an answer nobody will read). */
  abandon(): void;
}

type Callback = (err: unknown, ...rest: unknown[]) => unknown;

/**
 * Wraps a mysql2 command callback so that it fires exactly once: with the server's answer, or with an error when the
 * deadline passes or the command is aborted through `inFlight`. Runs for every statement: one object, two bound
 * functions and one timer, no named closures (under tsx each named closure made per call costs a defineProperty).
 */
export function answerWithin(cb: Callback, inFlight: InFlight, d: AnswerDeadline): Callback {
  return new Waiting(cb, inFlight, d).finish;
}

class Waiting {
  done = false;
  timer: NodeJS.Timeout;
  readonly finish: Callback;
  readonly abort: (err: Error) => void;

  constructor(
    private readonly cb: Callback,
    private readonly inFlight: InFlight,
    readonly d: AnswerDeadline,
  ) {
    this.finish = this.answer.bind(this);
    this.abort = this.fail.bind(this);
    const stalls = d.stallMs !== undefined && d.onStall !== undefined && d.stallMs < d.ms;
    this.timer = setTimeout(stalls ? stalled : expire, stalls ? d.stallMs : d.ms, this).unref();
    inFlight.add(this.abort);
  }

  answer(err: unknown, ...rest: unknown[]): unknown {
    if (this.done) return undefined;
    this.done = true;
    clearTimeout(this.timer);
    this.inFlight.delete(this.abort);
    return this.cb(err, ...rest);
  }

  fail(err: Error): void {
    if (this.done) return;
    this.answer(err);
    this.d.abandon();
  }
}

function stalled(w: Waiting): void {
  if (w.done) return;
  w.d.onStall!();
  if (!w.done) w.timer = setTimeout(expire, w.d.ms - w.d.stallMs!, w).unref();
}

function expire(w: Waiting): void {
  if (w.done) return;
  w.fail(w.d.expired());
}
