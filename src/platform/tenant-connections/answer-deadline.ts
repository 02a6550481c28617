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
 * deadline passes or the command is aborted through `inFlight`.
 */
export function answerWithin(cb: Callback, inFlight: InFlight, d: AnswerDeadline): Callback {
  let done = false;
  let timer: NodeJS.Timeout;
  const finish = (err: unknown, ...rest: unknown[]): unknown => {
    if (done) return undefined;
    done = true;
    clearTimeout(timer);
    inFlight.delete(abort);
    return cb(err, ...rest);
  };
  function abort(err: Error): void {
    if (done) return;
    finish(err);
    d.abandon();
  }
  const expire = () => {
    if (done) return;
    const err = d.expired();
    abort(err);
  };
  if (d.stallMs !== undefined && d.onStall && d.stallMs < d.ms) {
    timer = setTimeout(() => {
      if (done) return;
      d.onStall!();
      if (!done) timer = setTimeout(expire, d.ms - d.stallMs!).unref();
    }, d.stallMs).unref();
  } else {
    timer = setTimeout(expire, d.ms).unref();
  }
  inFlight.add(abort);
  return finish;
}
