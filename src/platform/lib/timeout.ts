/**
 * Settles with p, or rejects with a TimeoutError after ms (the timer never keeps the process alive longer). One promise
 * and one timer: it sits on hot paths (every enqueue), where Promise.race and finally cost three promises more.
 */
export function withTimeout<T>(p: Promise<T>, ms: number, what = 'operation'): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(Object.assign(new Error(`${what} timed out after ${ms}ms`), { name: 'TimeoutError' })), ms);
    p.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: Error) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
