/** The CLI's help and its commands name the same commands (help is printed before anything connects). */
import { expect } from 'chai';
import { buildCommands } from '../../../src/app/cli/commands.js';
import { HELP } from '../../../src/app/cli/help.js';
import type { Deps } from '../../../src/deps.js';

describe('CLI commands (unit)', () => {
  it('every command has its help, and every help entry is a command', () => {
    // Building the commands touches no service: a config is all they read up front.
    const commands = buildCommands({ config: { defaultCredits: 100, port: 4000, db: { name: 'x' } } } as unknown as Deps);
    expect(Object.keys(commands).sort()).to.deep.equal(Object.keys(HELP).sort());
  });
});
