/**
 * Requests Node's HTTP parser refuses before Koa sees them (headers over the limit, a doubled or malformed
 * Content-Length, a broken request line) get the API's JSON error shape and an X-Request-Id too, instead of Node's
 * empty answer.
 */
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { Duplex } from 'node:stream';

interface ParserError {
  status: number;
  reason: string;
  code: string;
  message: string;
}
const ANSWERS: Record<string, ParserError> = {
  HPE_HEADER_OVERFLOW: {
    status: 431,
    reason: 'Request Header Fields Too Large',
    code: 'HEADERS_TOO_LARGE',
    message: 'the request headers are too large',
  },
  ERR_HTTP_REQUEST_TIMEOUT: {
    status: 408,
    reason: 'Request Timeout',
    code: 'REQUEST_TIMEOUT',
    message: 'the request was not received in time',
  },
};
const BAD_REQUEST: ParserError = { status: 400, reason: 'Bad Request', code: 'BAD_REQUEST', message: 'the request is not valid HTTP' };

/** Answers parser errors of `server` in JSON (and closes the connection, as Node does). */
export function answerClientErrorsInJson(server: Server): void {
  server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
    // A connection the client dropped, or one already answered: nothing can be written.
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const { status, reason, code, message } = ANSWERS[err.code ?? ''] ?? BAD_REQUEST;
    const requestId = randomUUID();
    const body = JSON.stringify({ success: false, error: { code, message }, requestId });
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `X-Request-Id: ${requestId}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
}
