// Types for tether.js, the browser client for tether servers (docs/clients.md).

/** Reconnect timing, in milliseconds; `maxAttempts` failed connects in a row give up. */
export interface Backoff {
  initial?: number;
  factor?: number;
  maximum?: number;
  jitter?: number;
  maxAttempts?: number | null;
}

export interface TetherClientOptions {
  /** The server's `event_key` (default "type"). */
  eventKey?: string;
  /** The server's `request_key` (default "ref"). */
  requestKey?: string;
  /** false: any drop is final. */
  reconnect?: boolean;
  backoff?: Backoff;
  protocols?: string | string[];
  /** Keep group positions in `storage` under this key, so a reloaded page recovers. */
  storageKey?: string | null;
  storage?: Storage | null;
}

export type ClientState = "idle" | "connecting" | "open" | "waiting" | "offline" | "closed";

/** Whether a close code means: do not reconnect (1000, 1002, 1003, 1007-1010, 4000-4999). */
export function isFinal(code: number): boolean;

/** Milliseconds before reconnect attempt `attempt`. */
export function backoffDelay(backoff: Backoff, attempt: number): number;

/** A request failed: the server's error code, or "timeout" / "closed" from the client. */
export class CallError extends Error {
  readonly event: string;
  readonly code: string;
  readonly detail: string;
  readonly data: unknown;
  constructor(event: string, code: string, message?: string, data?: unknown);
}

/** Throw from an `onCall` handler to answer with this error. */
export class RequestError extends Error {
  readonly code: string;
  readonly data: unknown;
  constructor(code: string, message?: string, data?: unknown);
}

export class TetherClient<Message = any> {
  /** `url` may be a function, called for each attempt (to add `since`, a fresh token, ...). */
  constructor(url: string | ((client: TetherClient<Message>) => string), options?: TetherClientOptions);
  readonly url: string | ((client: TetherClient<Message>) => string);
  /** The last position ("<epoch>:<offset>") seen per group. */
  readonly positions: Record<string, string>;
  /** The groups joined with `join`, re-joined after every reconnect. */
  readonly groups: Map<string, string>;
  /** How many connections were opened (2 and up: reconnects). */
  readonly connects: number;
  /** The close code of the last connection that ended. */
  readonly closeCode: number | null;
  readonly state: ClientState;
  connect(): Promise<WebSocket>;
  on(event: string, handler: (message: Message) => void): this;
  onCall(event: string, handler: (data: any) => unknown | Promise<unknown>): this;
  addEventListener(kind: "message", listener: (message: Message) => void): void;
  addEventListener(kind: "state", listener: (state: ClientState) => void): void;
  send(event: string, data?: unknown): Promise<void>;
  sendJson(message: unknown): Promise<void>;
  request<Reply = any>(event: string, data?: unknown, options?: { timeout?: number }): Promise<Reply>;
  join<Answer = any>(group: string, options?: { event?: string; timeout?: number }): Promise<Answer>;
  close(): void;
  [Symbol.asyncIterator](): AsyncIterator<Message>;
}
