/** What a bin/tenant command is: it parses its arguments, calls a service, and answers what to print. */
import type { ProgressBar } from './progress-bar.js';

export interface CommandResult {
  /** What --json prints on stdout. */
  json: unknown;
  /** What a person sees on stdout. */
  text: string;
  /** The command wrote its own output on stdout (a stream): nothing more is printed there. */
  quiet?: boolean;
  /** Non-zero when the command ran but something in it failed (e.g. one tenant's migration). */
  exitCode?: number;
  /** With a non-zero exitCode: the one-line reason printed on stderr. */
  reason?: string;
}

export interface CommandContext {
  argv: string[];
  /** Progress lines (stderr on a TTY). */
  progress: (line: string) => void;
  /** With --json: one JSON line on stdout per event while the command runs (its result is the last line). */
  emit?: (event: object) => void;
  /** On a terminal without --json: a progress bar on stderr. */
  progressBar?: (total: number) => ProgressBar;
}

export type Command = (c: CommandContext) => Promise<CommandResult>;

/** Commands by name. */
export type Commands = Record<string, Command>;
