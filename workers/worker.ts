/** Entry point of a worker process (`npm run start:worker`): the delivery and webhook workers, without the API. */
import { runProcess } from '../src/app/run.js';

try {
  await runProcess('worker');
} catch (err) {
  process.stderr.write(`fatal: ${(err as Error).message}\n`);
  process.exit(1);
}
