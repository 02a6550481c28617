/**
 * COM_CHANGE_USER for a tenant switch, as mysql2's `changeUser` does it minus what a switch does not need on the hot
 * path. MariaDB answers every COM_CHANGE_USER with an auth switch carrying a fresh scramble (replay protection), so a
 * switch is two round trips whatever the client does; mysql2 then `require()`s its auth-switch module again (through
 * the module loader, and tsx's resolver when the process runs under tsx: about 30 µs per switch here), builds an auth
 * plugin closure, answers through a promise, and hashes the password three times per token, for two tokens.
 *
 * Here the login's password hashes (SHA-1 and SHA-1 of that: what `mysql_native_password` derives every token from)
 * are computed once per login and kept as long as the login object lives (a WeakMap), so each token costs one SHA-1,
 * the change packet carries no token once the connection's server has shown it asks for a fresh one (asksAfresh), and
 * the auth switch is answered synchronously. Anything else the server asks (another plugin, more data, a second
 * factor) goes through mysql2's own handling, unchanged. Connections without mysql2's command queue (the unit tests'
 * fakes) use their `changeUser`.
 */
import { hash } from 'node:crypto';
import { createRequire } from 'node:module';
import path from 'node:path';
import type mysql from 'mysql2';

const require = createRequire(import.meta.url);

interface MysqlPacket {
  buffer: Buffer;
  offset: number;
  end: number;
  peekByte(): number;
}
interface CommandQueue {
  length: number;
  shift(): unknown;
  push(command: unknown): void;
  unshift(command: unknown): void;
}
interface Mysql2Connection {
  config: { clientFlags: number; charsetNumber: number; compress?: boolean };
  serverCapabilityFlags: number;
  clientEncoding: string | undefined;
  sequenceId: number;
  stream: { cork(): void; uncork(): void; destroy(): void };
  _statements: { clear(): void };
  _commands: CommandQueue;
  _paused: boolean;
  _closing: boolean;
  writePacket(packet: unknown): void;
  addCommand(command: unknown): unknown;
  _handshakePacket?: { authPluginData1: Buffer; authPluginData2: Buffer };
}
/** A mysql2 command (Query) as the connection runs it: `next` is its state, null until it starts. */
interface QueuedCommand {
  next: ((packet: unknown, connection: Mysql2Connection) => unknown) | null;
  start(packet: unknown, connection: Mysql2Connection): unknown;
  onResult?: (err: Error) => void;
  /** The state its early start left it in (sendWith). */
  pipelinedState?: unknown;
}
interface SwitchOptions {
  user: string;
  password: string;
  database: string;
  charsetNumber: number;
  currentConfig: object;
}
type HandshakeStep = (this: SwitchUser, packet: MysqlPacket, connection: Mysql2Connection) => unknown;
interface ChangeUserCommand {
  authenticationFactor: number;
  start(packet: MysqlPacket, connection: Mysql2Connection): unknown;
  handshakeResult(packet: MysqlPacket, connection: Mysql2Connection): unknown;
  onResult?: (err: (Error & { fatal?: boolean }) | null) => void;
}
interface ChangeUserClass {
  new (options: Record<string, unknown>, callback: (err: (Error & { fatal?: boolean }) | null) => void): ChangeUserCommand;
  prototype: ChangeUserCommand;
}
interface Packets {
  ChangeUser: { prototype: object };
  AuthSwitchResponse: new (data: Buffer) => { toPacket(): unknown };
}

// mysql2's own classes, from its files (its package exports only the entry points; the version is pinned by
// package-lock.json, the behaviour by test/platform/tenant-connections.test.ts on the real server).
const mysql2Dir = path.dirname(require.resolve('mysql2/package.json'));
const ChangeUser = require(path.join(mysql2Dir, 'lib/commands/change_user.js')) as ChangeUserClass;
const packets = require(path.join(mysql2Dir, 'lib/packets/index.js')) as Packets;
const charsetEncodings = require(path.join(mysql2Dir, 'lib/constants/charset_encodings.js')) as Record<number, string | undefined>;
const { MULTI_FACTOR_AUTHENTICATION } = require(path.join(mysql2Dir, 'lib/constants/client.js')) as { MULTI_FACTOR_AUTHENTICATION: number };
const Query = require(path.join(mysql2Dir, 'lib/commands/query.js')) as abstract new (...args: never[]) => object;

const AUTH_SWITCH_REQUEST = 0xfe;
const NATIVE_PASSWORD = 'mysql_native_password';
const SCRAMBLE_LENGTH = 20;

/** What mysql_native_password derives every token from: SHA-1 of the password, and SHA-1 of that. */
interface PasswordHashes {
  stage1: Buffer;
  stage2: Buffer;
  /** The password is empty: the token is empty too (mysql2 sends none). */
  empty: boolean;
}

const sha1 = (data: Buffer) => hash('sha1', data, 'buffer');
const NO_TOKEN = Buffer.alloc(0);

/**
 * Connections whose server answered a COM_CHANGE_USER with a mysql_native_password auth switch: MariaDB, which never
 * accepts the handshake's scramble twice (replay protection), so it reads no token from the change packet and asks for
 * one on a fresh scramble every time. Their later switches send no token in the packet (one SHA-1 less per switch); a
 * server that checks the packet's token (MySQL) never asks, so its connections always send it.
 */
const asksAfresh = new WeakSet<object>();

/**
 * The mysql_native_password token for `scramble`: SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password))); empty for
 * an empty password (as mysql2 sends it).
 */
export function nativePasswordToken(hashes: PasswordHashes, scramble: Buffer): Buffer {
  if (hashes.empty) return Buffer.alloc(0);
  const mask = sha1(Buffer.concat([scramble.subarray(0, SCRAMBLE_LENGTH), hashes.stage2]));
  const token = Buffer.allocUnsafe(mask.length);
  for (let i = 0; i < mask.length; i++) token[i] = mask[i]! ^ hashes.stage1[i]!;
  return token;
}

export function passwordHashes(password: string): PasswordHashes {
  const stage1 = sha1(Buffer.from(password, 'utf8'));
  // Kept for every cached tenant: both in one buffer of their own (not two; not a slice of Node's shared pool, which
  // would keep its whole 8 KiB slab alive).
  const both = Buffer.alloc(2 * stage1.length);
  stage1.copy(both, 0);
  sha1(stage1).copy(both, stage1.length);
  return { stage1: both.subarray(0, stage1.length), stage2: both.subarray(stage1.length), empty: password === '' };
}

// Called with the command as `this`, as mysql2 calls it.
// eslint-disable-next-line @typescript-eslint/unbound-method
const generic = ChangeUser.prototype.handshakeResult;

/** mysql2's ChangeUser, answering a mysql_native_password auth switch itself (one SHA-1, no promise, no require). */
class SwitchUser extends ChangeUser {
  /** The answer to the auth switch was handed to the holder (statements may be queued, or sent, behind it). */
  held = false;

  constructor(
    readonly options: SwitchOptions,
    readonly hashes: PasswordHashes,
    readonly holder: AnswerHolder | undefined,
    callback: (err: (Error & { fatal?: boolean }) | null) => void,
  ) {
    super(options as unknown as Record<string, unknown>, callback);
  }

  /**
   * mysql2's start (ChangeUser.start), with the packet's token computed from the cached hashes (one SHA-1 instead of
   * three: the token on the handshake's scramble, which a MySQL server checks and MariaDB replaces by an auth switch);
   * the server's answers then come to fastStep.
   */
  override start(_packet: MysqlPacket, connection: Mysql2Connection): unknown {
    const o = this.options;
    const { authPluginData1, authPluginData2 } = connection._handshakePacket!;
    const packet = Object.assign(Object.create(packets.ChangeUser.prototype) as { toPacket(): unknown }, {
      flags: connection.config.clientFlags,
      user: o.user,
      database: o.database,
      password: o.password,
      authPluginData1,
      authPluginData2,
      connectAttributes: {},
      authToken: asksAfresh.has(connection)
        ? NO_TOKEN
        : nativePasswordToken(this.hashes, Buffer.concat([authPluginData1, authPluginData2])),
      charsetNumber: o.charsetNumber,
    });
    Object.assign(o.currentConfig, { user: o.user, password: o.password, database: o.database, charsetNumber: o.charsetNumber });
    connection.clientEncoding = charsetEncodings[o.charsetNumber];
    // mysql2's cache of prepared statements: the server forgets them all at COM_CHANGE_USER.
    connection._statements.clear();
    connection.writePacket(packet.toPacket());
    if (connection.serverCapabilityFlags & MULTI_FACTOR_AUTHENTICATION) this.authenticationFactor = 1;
    return fastStep;
  }
}

/** The plugin name and data of an AuthSwitchRequest (0xfe, name NUL-terminated, data), read without moving the packet. */
function authSwitchRequest(packet: MysqlPacket): { pluginName: string; pluginData: Buffer } | undefined {
  const { buffer, offset, end } = packet;
  const nul = buffer.indexOf(0, offset + 1);
  if (nul < 0 || nul >= end) return undefined;
  return { pluginName: buffer.toString('latin1', offset + 1, nul), pluginData: buffer.subarray(nul + 1, end) };
}

const fastStep: HandshakeStep = function (this: SwitchUser, packet, connection) {
  // A second factor (MySQL 8's MFA), another plugin, OK and ERR packets: mysql2's own handling.
  const request = packet.peekByte() === AUTH_SWITCH_REQUEST && this.authenticationFactor === 0 ? authSwitchRequest(packet) : undefined;
  if (request?.pluginName !== NATIVE_PASSWORD || request.pluginData.length < SCRAMBLE_LENGTH) return generic.call(this, packet, connection);
  asksAfresh.add(connection);
  const answer = new packets.AuthSwitchResponse(nativePasswordToken(this.hashes, request.pluginData)).toPacket();
  if (this.holder === undefined) {
    connection.writePacket(answer);
  } else {
    this.held = true;
    this.holder.hold(new Held(connection, answer));
  }
  return fastStep;
};

/**
 * The answer to MariaDB's auth switch, held back so that it can leave in one write with the session's first statement:
 * a switch then costs one round trip more than a statement on a session already serving the tenant, not two.
 */
/** Takes the answer to the auth switch instead of its being written (switchUser). */
export interface AnswerHolder {
  hold(answer: HeldAnswer): void;
}

export interface HeldAnswer {
  /** Writes the answer alone; what is queued behind the switch runs once the server confirms it. */
  send(): void;
  /**
   * Writes the answer and `command` (a text query just queued on the connection, the only one behind the switch) in one
   * write, without waiting for the switch's OK. For a statement that writes nothing: should the switch fail, MariaDB
   * keeps the previous user's session and runs the statement as that user, and its answer is never read (the
   * connection has failed first, see failQueued). Anything else is sent as send() would. Answers whether the command
   * left with the answer.
   */
  sendWith(command: unknown): boolean;
}

class Held implements HeldAnswer {
  private sent = false;

  constructor(
    private readonly connection: Mysql2Connection,
    private readonly answer: unknown,
  ) {}

  send(): void {
    if (this.sent) return;
    this.sent = true;
    this.connection.writePacket(this.answer);
  }

  sendWith(command: unknown): boolean {
    const c = this.connection;
    const cmd = command as QueuedCommand;
    if (this.sent || c.config.compress === true || typeof cmd.start !== 'function' || cmd.next !== null || !onlyQueued(c, cmd)) {
      this.send();
      return false;
    }
    this.sent = true;
    c.stream.cork();
    c.writePacket(this.answer);
    // The query is packet 0 of its own command; the switch's OK still comes with the switch's sequence number.
    startEarly(c, cmd);
    c.stream.uncork();
    return true;
  }
}

/** Whether `cmd` is the one command queued behind the current one. */
function onlyQueued(c: Mysql2Connection, cmd: QueuedCommand): boolean {
  if (c._commands.length !== 1) return false;
  const first = c._commands.shift();
  c._commands.unshift(first);
  return first === cmd;
}

/**
 * Whether a switch can be sent right behind `statement` (see switchUser's `behind`): a text query (never a prepared
 * statement: the switch forgets them, and mysql2 may queue its execution after the prepare's answer), the connection's
 * last command, already written: running now, or started early with a switch's answer (HeldAnswer.sendWith).
 */
export function canSwitchBehind(conn: mysql.Connection, statement: unknown): boolean {
  const c = conn as unknown as Mysql2Connection & { _command?: unknown };
  if (typeof c.addCommand !== 'function' || c._handshakePacket === undefined || c.config.compress === true) return false;
  if (!(statement instanceof Query)) return false;
  const cmd = statement as QueuedCommand;
  if (c._command === cmd) return c._commands.length === 0 && cmd.next !== null;
  return cmd.next === resumePipelined && onlyQueued(c, cmd);
}

/**
 * A command started early (sendWith) when its turn comes: mysql2 resets the sequence to 0 and runs its state with no
 * packet; its answer starts at 1, after the query it already sent.
 */
function resumePipelined(this: QueuedCommand, _packet: unknown, connection: Mysql2Connection): unknown {
  connection.sequenceId = 1;
  return this.pipelinedState;
}

/**
 * A switch that was answered through a holder failed: MariaDB kept the previous user's session, so nothing queued behind
 * it may start and no answer to a statement sent with it may be read. Called while mysql2 handles the switch's error
 * packet: the queue is emptied (mysql2 then has no next command to start), the connection reads no packet any more
 * (paused: not even the rest of this chunk) and is closed, and each queued command gets the switch's error.
 */
function failQueued(c: Mysql2Connection, err: Error): void {
  const queued: QueuedCommand[] = [];
  while (c._commands.length > 0) queued.push(c._commands.shift() as QueuedCommand);
  c._paused = true;
  c._closing = true; // mysql2 notifies nobody when the socket closes: the queued commands are told below
  c.stream.destroy();
  process.nextTick(notifyFailed, queued, err);
}

function notifyFailed(queued: readonly QueuedCommand[], err: Error): void {
  for (const cmd of queued) cmd.onResult?.(err);
}

/** Per login object, its password's hashes (recomputed if the password on it changes). */
const hashesOf = new WeakMap<object, { password: string; hashes: PasswordHashes }>();

export interface SwitchLogin {
  user: string;
  password: string;
  database: string;
}

/**
 * Sends COM_CHANGE_USER as `login` with the handshake's character set `charsetNumber`; `done` gets mysql2's answer
 * (an error is fatal: MariaDB keeps the previous user's session after a failed change). `login` should be an object
 * that lives as long as the tenant's credentials (its hashes are kept with it). With a `holder`, the answer to MariaDB's
 * auth switch is handed to it instead of written (see HeldAnswer); it must be sent (with the session's first
 * statement, or alone), else the switch never completes. The holder is not called when the server asks anything else
 * (the answers are then written as usual, and `done` alone tells when the switch is over).
 *
 * With `behind` (a statement canSwitchBehind() accepted, the previous tenant's last on this session), COM_CHANGE_USER
 * is written at once, in the same write as that statement when the caller corks the socket, instead of after its
 * answer: MariaDB runs the statement, answers it, then answers the switch, so the switch's first round trip rides on
 * the statement's. Nothing may be queued on the connection between the two (the statement's lease has ended for its
 * caller: anything sent later runs as `login`).
 */
export function switchUser(
  conn: mysql.Connection,
  login: SwitchLogin,
  charsetNumber: number,
  done: (err: Error | null) => void,
  holder?: AnswerHolder,
  behind?: unknown,
): void {
  const c = conn as unknown as Mysql2Connection;
  if (typeof c.addCommand !== 'function' || c._handshakePacket === undefined) {
    conn.changeUser({ user: login.user, password: login.password, database: login.database }, (err) => done(err ?? null));
    return;
  }
  let cached = hashesOf.get(login);
  if (cached?.password !== login.password)
    hashesOf.set(login, (cached = { password: login.password, hashes: passwordHashes(login.password) }));
  const { hashes } = cached;
  const command: SwitchUser = new SwitchUser(
    { user: login.user, password: login.password, database: login.database, charsetNumber, currentConfig: c.config },
    hashes,
    holder,
    (err) => {
      if (err) {
        err.fatal = true;
        if (command.held) failQueued(c, err);
      }
      done(err);
    },
  );
  c.addCommand(command);
  if (behind !== undefined) startEarly(c, command as unknown as QueuedCommand);
}

/**
 * Writes a command queued behind the running one now (its first packet is packet 0 of its own exchange); when its turn
 * comes, mysql2 resumes it in the state its start left it in, expecting the server's answer at sequence 1.
 */
function startEarly(c: Mysql2Connection, cmd: QueuedCommand): void {
  const sequenceId = c.sequenceId;
  c.sequenceId = 0;
  cmd.pipelinedState = cmd.start(undefined, c);
  c.sequenceId = sequenceId;
  cmd.next = resumePipelined;
}
