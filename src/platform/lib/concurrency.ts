/** Runs fn over items with at most `concurrency` in flight; `shouldStop` ends the starting of new items. */
export async function mapWithConcurrency<T, R>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T, index: number) => Promise<R>,
  shouldStop: (result: R) => boolean = () => false,
): Promise<R[]> {
  const results: R[] = [];
  let next = 0;
  let stopped = false;
  const lane = async () => {
    while (!stopped && next < items.length) {
      const index = next++;
      let result: R;
      try {
        result = await fn(items[index]!, index);
      } catch (err) {
        stopped = true; // the other lanes finish their current item and start no new one
        throw err;
      }
      results[index] = result;
      if (shouldStop(result)) stopped = true;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, lane));
  return results.filter((r) => r !== undefined);
}
