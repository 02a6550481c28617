/**
 * Entry point: `--role all` (default, `npm start`: the API and the delivery workers), `--role api`, `--role worker`.
 */
import { parseArgs } from 'node:util';
import { runProcess, type Role } from './app/run.js';

const ROLES: readonly Role[] = ['all', 'api', 'worker'];

try {
  const { values } = parseArgs({ options: { role: { type: 'string', default: 'all' } } });
  const role = values.role as Role;
  if (!ROLES.includes(role)) throw new Error(`--role must be all, api or worker (got ${role})`);
  await runProcess(role);
} catch (err) {
  process.stderr.write(`fatal: ${(err as Error).message}\n`);
  process.exit(1);
}
