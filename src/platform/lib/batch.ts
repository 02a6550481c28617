/**
 * Work asked for while the process handles one batch of ready sockets, done together once that batch is done
 * (setImmediate runs after the poll phase): under load many requests arrive in one such batch, so what each would do
 * with its own round trip (a Redis command, a shared-DB read) becomes one round trip for all of them.
 */

/**
 * Runs `send` after the current batch of I/O callbacks, with every other send asked for in it, in order; `around`, if
 * given, runs each turn's sends (e.g. with a socket corked, so that they leave in one write).
 */
export function createNextTurn(around?: (sendAll: () => void) => void): <T>(send: () => Promise<T>) => Promise<T> {
  let queued: (() => void)[] = [];
  const flush = () => {
    const sends = queued;
    queued = [];
    const sendAll = () => {
      for (const send of sends) send();
    };
    if (around) around(sendAll);
    else sendAll();
  };
  return <T>(send: () => Promise<T>) =>
    new Promise<T>((resolve, reject) => {
      if (queued.length === 0) setImmediate(flush);
      queued.push(() => void send().then(resolve, reject));
    });
}

/**
 * A loader of one key whose calls within one batch of I/O callbacks become one call of `loadMany` (at most `max` keys
 * each; a key asked twice is loaded once). `loadMany` answers in the order of the keys it was given; its failure fails
 * every caller of that batch.
 */
export function batchedLoader<K, V>(loadMany: (keys: K[]) => Promise<V[]>, max = 100): (key: K) => Promise<V> {
  let pending = new Map<K, { resolve: (v: V) => void; reject: (err: unknown) => void }[]>();
  const flush = () => {
    const batch = pending;
    pending = new Map();
    const keys = [...batch.keys()];
    for (let i = 0; i < keys.length; i += max) {
      const part = keys.slice(i, i + max);
      loadMany(part).then(
        (values) => part.forEach((k, j) => batch.get(k)!.forEach((w) => w.resolve(values[j]!))),
        (err: unknown) => part.forEach((k) => batch.get(k)!.forEach((w) => w.reject(err))),
      );
    }
  };
  return (key) =>
    new Promise<V>((resolve, reject) => {
      if (pending.size === 0) setImmediate(flush);
      const waiting = pending.get(key);
      if (waiting) waiting.push({ resolve, reject });
      else pending.set(key, [{ resolve, reject }]);
    });
}
