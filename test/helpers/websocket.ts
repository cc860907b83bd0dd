import type { IncomingMessage } from 'node:http';
import { WebSocket } from 'ws';

/** A raw WebSocket client for framing and bad-input tests: send text, read what the server says. */
export class RawWebSocket {
  readonly messages: string[] = [];
  closed?: { code: number; reason: string };
  private waiters: (() => void)[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.messages.push(String(data));
      this.wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: String(reason) };
      this.wake();
    });
    ws.on('error', () => undefined);
  }

  /** Opens a connection offering `protocols` (['xmpp'] by default). */
  static async connect(url: string, protocols: string[] = ['xmpp'], headers: Record<string, string> = {}): Promise<RawWebSocket> {
    const ws = new WebSocket(url, protocols, { headers, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new RawWebSocket(ws);
  }

  /** The HTTP status with which the server refuses a handshake (rejects if it accepts). */
  static refusal(url: string, protocols: string[]): Promise<{ status: number; body: string }> {
    const ws = new WebSocket(url, protocols);
    return new Promise((resolve, reject) => {
      ws.once('open', () => {
        ws.terminate();
        reject(new Error('the handshake was accepted'));
      });
      ws.once('unexpected-response', (_req, res: IncomingMessage) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      ws.once('error', () => undefined);
    });
  }

  send(text: string): void {
    this.ws.send(text);
  }

  get text(): string {
    return this.messages.join('\n');
  }

  /** Waits until one received message matches `pattern`; resolves with it (rejects after `ms`). */
  async waitFor(pattern: RegExp, ms = 5000): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.messages.find((m) => pattern.test(m));
      if (found !== undefined) return found;
      if (this.closed) throw new Error(`closed (${this.closed.code}); received: ${this.text}`);
      if (Date.now() >= deadline) throw new Error(`timed out waiting for ${pattern}; received: ${this.text}`);
      await this.sleepUntilWoken(deadline - Date.now());
    }
  }

  /** Resolves with the close code and reason once the connection is closed (rejects after `ms`). */
  async waitClosed(ms = 5000): Promise<{ code: number; reason: string }> {
    const deadline = Date.now() + ms;
    while (!this.closed) {
      if (Date.now() >= deadline) throw new Error('connection still open');
      await this.sleepUntilWoken(deadline - Date.now());
    }
    return this.closed;
  }

  close(): void {
    this.ws.terminate();
  }

  private sleepUntilWoken(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

/** The RFC 7395 stream opening a client sends. */
export const WS_OPEN = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>";
