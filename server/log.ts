/**
 * Logging on winston: human-readable lines or JSON, to the console, a file and Elasticsearch.
 * Categories (`--debug cluster,db`) turn on debug lines for one part of the server; a disabled
 * debug() is a no-op function, so hot paths pay one call and nothing else.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from '@elastic/elasticsearch';
import winston from 'winston';
import type TransportStream from 'winston-transport';
import type { Config } from './config/types';

/** Where winston formats put the finished line (triple-beam's MESSAGE). */
const MESSAGE = Symbol.for('message');
/** winston's transport base class; its typings name it only as a type, so take it from the module. */
const Transport = (winston as unknown as { Transport: typeof TransportStream }).Transport;

export type LogMeta = Record<string, unknown>;

export interface Logger {
  error(message: string, meta?: LogMeta): void;
  warn(message: string, meta?: LogMeta): void;
  info(message: string, meta?: LogMeta): void;
  /** A no-op unless debug is on for this logger's category (or --log-level is debug or below). */
  debug(message: string, meta?: LogMeta): void;
  /** A logger whose every line also carries `meta`, e.g. `{ conn: 'c2s-17' }`. */
  child(meta: LogMeta): Logger;
  /** A child for one part of the server; its debug lines appear only when `name` is in --debug. */
  category(name: string): Logger;
  /** True when debug() writes; guard costly message building with it. Absent on hand-made fakes. */
  readonly debugEnabled?: boolean;
}

/** The logger createLogger returns: closing flushes the file and Elasticsearch. */
export interface RootLogger extends Logger {
  close(): Promise<void>;
  /** Reopens --log-file by name (after log rotation moved it away: SIGHUP). */
  reopen(): void;
  /** Takes a new --log-level and --debug; every logger made so far follows. */
  reconfigure(config: Pick<LoggerConfig, 'logLevel' | 'debug'>): void;
  /** Records Elasticsearch did not take (refused, beyond its queue, or unsent at close); 0 without it. */
  droppedRecords(): number;
}

export type LoggerConfig = Pick<
  Config,
  'logLevel' | 'logFile' | 'logJson' | 'debug' | 'logElasticsearch' | 'logElasticsearchIndex' | 'clusterHostname'
>;

export interface CreateLoggerOptions {
  /** Where console lines go [process.stdout]. */
  stream?: NodeJS.WritableStream;
  /** Receives the warning printed when Elasticsearch stops taking records, and the one when it is back [console.warn]. */
  warn?: (message: string) => void;
}

/** npm levels, as winston numbers them: lower is more severe. */
const LEVELS: Record<string, number> = { error: 0, warn: 1, info: 2, http: 3, verbose: 4, debug: 5, silly: 6 };
const DEBUG = LEVELS.debug;

/** One log line before formatting; what every transport receives as `info.record`. */
interface LogRecord {
  timestamp: string;
  level: string;
  message: string;
  category?: string;
  /** Child meta (e.g. conn=c2s-17), then the call's own meta. */
  context: LogMeta;
  meta?: LogMeta;
}

function noop(): void {}

type LogFn = (message: string, meta?: LogMeta) => void;

class CategoryLogger implements Logger {
  private levelFns!: { error: LogFn; warn: LogFn; info: LogFn; debug: LogFn; debugEnabled: boolean };
  /** The sink's generation the functions were built for: a reconfigure (SIGHUP) rebuilds them. */
  private generation = -1;

  constructor(
    protected readonly sink: Sink,
    private readonly categoryName: string | undefined,
    private readonly context: LogMeta,
  ) {
    this.build();
  }

  private build(): void {
    const { sink, categoryName, context } = this;
    const threshold = sink.threshold(categoryName);
    const at = (level: string): LogFn =>
      threshold >= LEVELS[level] ? (message, meta) => sink.write(level, categoryName, context, message, meta) : noop;
    this.levelFns = { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug'), debugEnabled: threshold >= DEBUG };
    this.generation = sink.generation;
  }

  private get fns(): CategoryLogger['levelFns'] {
    if (this.generation !== this.sink.generation) this.build();
    return this.levelFns;
  }

  get error(): LogFn {
    return this.fns.error;
  }

  get warn(): LogFn {
    return this.fns.warn;
  }

  get info(): LogFn {
    return this.fns.info;
  }

  get debug(): LogFn {
    return this.fns.debug;
  }

  get debugEnabled(): boolean {
    return this.fns.debugEnabled;
  }

  child(meta: LogMeta): Logger {
    return new CategoryLogger(this.sink, this.categoryName, { ...this.context, ...meta });
  }

  category(name: string): Logger {
    return new CategoryLogger(this.sink, name, this.context);
  }
}

class Root extends CategoryLogger implements RootLogger {
  close(): Promise<void> {
    return this.sink.close();
  }

  droppedRecords(): number {
    return this.sink.elasticsearch?.dropped ?? 0;
  }

  reopen(): void {
    this.sink.reopen();
  }

  reconfigure(config: Pick<LoggerConfig, 'logLevel' | 'debug'>): void {
    this.sink.reconfigure(config);
  }
}

/** The shared end of every logger of one createLogger call. */
class Sink {
  private base: number;
  private debugCategories: ReadonlySet<string>;
  /** Bumped by reconfigure(): loggers rebuild their level functions when it changed. */
  generation = 0;
  private closing?: Promise<void>;
  /** Set by close(): later lines are dropped rather than written to an ended stream. */
  private closed = false;

  constructor(
    config: LoggerConfig,
    private readonly winstonLogger: winston.Logger,
    readonly elasticsearch: ElasticsearchTransport | undefined,
  ) {
    this.base = LEVELS[config.logLevel] ?? LEVELS.info;
    this.debugCategories = new Set(config.debug);
  }

  /** The most verbose level a logger of this category writes. */
  threshold(category: string | undefined): number {
    if (category !== undefined && (this.debugCategories.has(category) || this.debugCategories.has('all'))) {
      return Math.max(this.base, DEBUG);
    }
    return this.base;
  }

  reconfigure(config: Pick<LoggerConfig, 'logLevel' | 'debug'>): void {
    this.base = LEVELS[config.logLevel] ?? LEVELS.info;
    this.debugCategories = new Set(config.debug);
    this.winstonLogger.level = winstonLevel(config) ?? 'info';
    this.generation++;
  }

  /** Replaces each file transport by a new one on the same path (the old file was moved away). */
  reopen(): void {
    for (const transport of [...this.winstonLogger.transports]) {
      if (!(transport instanceof winston.transports.File)) continue;
      const file = transport as InstanceType<typeof winston.transports.File> & { filename: string; dirname: string; format?: winston.Logform.Format };
      const filename = path.join(file.dirname, file.filename);
      this.winstonLogger.add(new winston.transports.File({ filename, format: file.format }));
      this.winstonLogger.remove(transport);
      transport.close?.();
    }
  }

  write(level: string, category: string | undefined, context: LogMeta, message: string, meta?: LogMeta): void {
    if (this.closed) return;
    const record: LogRecord = { timestamp: new Date().toISOString(), level, message, category, context, meta };
    this.winstonLogger.log({ level, message, record });
  }

  close(): Promise<void> {
    this.closed = true;
    this.closing ??= (async () => {
      await this.elasticsearch?.flushAll();
      const transports = this.winstonLogger.transports;
      const finished = Promise.all(transports.map((t) => new Promise((resolve) => t.once('finish', resolve))));
      this.winstonLogger.end();
      // A transport that never finishes (a stuck disk) must not hold shutdown forever.
      await Promise.race([finished, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
    })();
    return this.closing;
  }
}

/** Builds the node's logger from the logging keys of the config. */
export function createLogger(config: LoggerConfig, opts: CreateLoggerOptions = {}): RootLogger {
  const node = config.clusterHostname;
  const lineFormat = config.logJson ? jsonFormat(node) : humanFormat();
  const out = opts.stream ?? process.stdout;
  // Logging must never take the node down: a closed stdout pipe (EPIPE) is ignored.
  if (out.listenerCount('error') === 0) out.on('error', noop);
  const transports: TransportStream[] = [new winston.transports.Stream({ stream: out, format: lineFormat })];
  if (config.logFile) transports.push(new winston.transports.File({ filename: config.logFile, format: lineFormat }));
  let elasticsearch: ElasticsearchTransport | undefined;
  if (config.logElasticsearch) {
    elasticsearch = new ElasticsearchTransport({
      url: config.logElasticsearch,
      index: config.logElasticsearchIndex ?? 'xmpp-server',
      node,
      warn: opts.warn,
    });
    transports.push(elasticsearch);
  }
  const winstonLogger = winston.createLogger({
    level: winstonLevel(config),
    levels: LEVELS,
    // Formatting happens per transport; the logger itself passes records through untouched.
    format: winston.format((info) => info)(),
    transports,
    exitOnError: false,
  });
  let reported = false;
  winstonLogger.on('error', (err: Error) => {
    if (reported) return;
    reported = true;
    console.error(`log: a log transport failed: ${err.message}`);
  });
  return new Root(new Sink(config, winstonLogger, elasticsearch), undefined, {});
}

/** What winston itself lets through: the base level, or debug when any category has debug on. */
function winstonLevel(config: Pick<LoggerConfig, 'logLevel' | 'debug'>): string | undefined {
  const anyDebug = config.debug.length > 0 ? DEBUG : 0;
  return Object.keys(LEVELS).find((l) => LEVELS[l] === Math.max(LEVELS[config.logLevel] ?? LEVELS.info, anyDebug));
}

/** A logger that writes nothing, for tests. */
export function silentLogger(): RootLogger {
  const silent: RootLogger = {
    error: noop,
    warn: noop,
    info: noop,
    debug: noop,
    debugEnabled: false,
    child: () => silent,
    category: () => silent,
    close: async () => {},
    droppedRecords: () => 0,
    reopen: noop,
    reconfigure: noop,
  };
  return silent;
}

// ---------------------------------------------------------------------------------------------
// Formats

function humanFormat(): winston.Logform.Format {
  return winston.format((info) => {
    info[MESSAGE] = formatHuman(info.record as LogRecord);
    return info;
  })();
}

function jsonFormat(node: string): winston.Logform.Format {
  return winston.format((info) => {
    info[MESSAGE] = safeStringify(toJsonRecord(info.record as LogRecord, node));
    return info;
  })();
}

/** `2026-11-21T10:00:00.000Z info  [c2s conn=c2s-17] message key=value` */
export function formatHuman(record: LogRecord): string {
  const tags: string[] = [];
  if (record.category !== undefined) tags.push(record.category);
  for (const [k, v] of Object.entries(record.context)) tags.push(`${k}=${formatValue(v)}`);
  let line = `${record.timestamp} ${record.level.padEnd(5)} ${tags.length > 0 ? `[${tags.join(' ')}] ` : ''}${record.message}`;
  let stack = '';
  if (record.meta) {
    for (const [k, v] of Object.entries(record.meta)) {
      line += ` ${k}=${formatValue(v)}`;
      if (v instanceof Error && v.stack) stack += `\n${v.stack.split('\n').slice(1).join('\n')}`;
    }
  }
  return line + stack;
}

function formatValue(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  if (v instanceof Error) return JSON.stringify(v.message);
  if (v === null || typeof v !== 'object') return String(v);
  return safeStringify(v);
}

const RESERVED = new Set(['timestamp', '@timestamp', 'level', 'message', 'node', 'category']);

/** The JSON shape of one record: fixed fields first, then context and meta, flattened. */
export function toJsonRecord(record: LogRecord, node: string): Record<string, unknown> {
  const out: Record<string, unknown> = {
    timestamp: record.timestamp,
    level: record.level,
    message: record.message,
    node,
  };
  if (record.category !== undefined) out.category = record.category;
  const add = (meta: LogMeta): void => {
    for (const [k, v] of Object.entries(meta)) {
      // A meta key must not overwrite a fixed field; it keeps its value under `key_`, except `node`:
      // `node` is the node that logs, so another node named in meta is the `peer`.
      const key = k === 'node' ? 'peer' : RESERVED.has(k) ? `${k}_` : k;
      out[key] = v instanceof Error ? errorToJson(v) : v;
    }
  };
  add(record.context);
  if (record.meta) add(record.meta);
  return out;
}

function errorToJson(err: Error): Record<string, unknown> {
  const code = (err as { code?: unknown }).code;
  return { name: err.name, message: err.message, stack: err.stack, ...(code === undefined ? {} : { code }) };
}

function safeStringify(value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  } catch {
    return '"[unserialisable]"';
  }
}

// ---------------------------------------------------------------------------------------------
// Elasticsearch

export interface ElasticsearchTransportOptions {
  /**
   * Base URL of the cluster, e.g. http://elastic:9200. Credentials in it (http://user:pass@elastic:9200)
   * are sent as HTTP basic auth and never printed.
   */
  url: string;
  /** Index (or data stream) to write to [xmpp-server]. */
  index?: string;
  /** Cluster hostname written into every record. */
  node: string;
  /** Milliseconds between flushes [1000]. */
  flushInterval?: number;
  /** Records per bulk request; a full batch is sent at once [500]. */
  batchSize?: number;
  /** Records held while Elasticsearch is slow or down; beyond this new records are dropped [10000]. */
  maxQueue?: number;
  /** Milliseconds to wait for one bulk answer before trying again later [10000]. */
  timeout?: number;
  /** Milliseconds before the first retry after a failed request; it doubles on each failure [1000]. */
  retryDelay?: number;
  /** Longest wait between retries [30000]. */
  maxRetryDelay?: number;
  /** Milliseconds flushAll() keeps trying before it counts what is left as dropped [5000]. */
  flushTimeout?: number;
  /** Receives the warning when Elasticsearch stops taking records, and the one when it is back [console.warn]. */
  warn?: (message: string) => void;
}

/**
 * A winston transport that queues JSON records and ships them in bulk requests through the official
 * client, @elastic/elasticsearch 8.19 (the 9.x line needs Node 22). Not pino-elasticsearch: it is a
 * stream over the same client's bulk helper, which drops what it could not send, and the stream stops
 * for good after a network error (pinojs/pino-elasticsearch#72). Here the queue outlives outages, so
 * the client only ever makes single requests (maxRetries 0) and the transport decides what to retry.
 *
 * While Elasticsearch is unreachable, times out or answers 429 or 5xx, records stay queued and the
 * batch is retried with back-off; what it refuses (another 4xx, or an item's own error) is dropped
 * and counted, as is what does not fit in the queue. log() never blocks and never throws.
 */
export class ElasticsearchTransport extends Transport {
  /** Records Elasticsearch did not take: refused, beyond the queue, or unsent at close. */
  dropped = 0;
  /** Records Elasticsearch accepted. */
  sent = 0;
  private readonly queue: string[] = [];
  /** Records of the bulk request on the wire; they still count towards maxQueue. */
  private inFlight = 0;
  private sending?: Promise<void>;
  private retryTimer?: NodeJS.Timeout;
  private nextDelay: number;
  /** Set after a request failed to reach Elasticsearch, until one succeeds. */
  private down = false;
  /** Set by the first warning of a spell of trouble, so a spell prints one line. */
  private warned = false;
  private stopped = false;
  /** Aborts the request on the wire when the transport stops (or flushAll runs out of time). */
  private readonly abort = new AbortController();
  private readonly client: Client;
  private readonly timer: NodeJS.Timeout;
  private readonly action: string;
  private readonly where: string;
  private readonly secrets: string[];
  private readonly batchSize: number;
  private readonly maxQueue: number;
  private readonly timeout: number;
  private readonly retryDelay: number;
  private readonly maxRetryDelay: number;
  private readonly flushTimeout: number;
  private readonly warn: (message: string) => void;

  constructor(private readonly opts: ElasticsearchTransportOptions) {
    super();
    const url = new URL(opts.url);
    const username = decodeURIComponent(url.username);
    const password = decodeURIComponent(url.password);
    // Every printed line is redacted against these: the password as written, decoded, and as basic auth.
    this.secrets = password === '' ? [] : [url.password, password, Buffer.from(`${username}:${password}`).toString('base64')];
    url.username = '';
    url.password = '';
    this.where = redactUrl(opts.url);
    this.client = new (elasticsearch().Client)({
      node: url.toString().replace(/\/+$/, ''),
      auth: username !== '' ? { username, password } : undefined,
      maxRetries: 0,
      requestTimeout: opts.timeout ?? 10000,
    });
    // `create` works for plain indices and data streams alike.
    this.action = JSON.stringify({ create: { _index: opts.index ?? 'xmpp-server' } });
    this.batchSize = opts.batchSize ?? 500;
    this.maxQueue = opts.maxQueue ?? 10000;
    this.timeout = opts.timeout ?? 10000;
    this.retryDelay = opts.retryDelay ?? 1000;
    this.maxRetryDelay = opts.maxRetryDelay ?? 30000;
    this.flushTimeout = opts.flushTimeout ?? 5000;
    this.nextDelay = this.retryDelay;
    this.warn = opts.warn ?? ((m) => console.warn(m));
    this.timer = setInterval(() => this.tick(), opts.flushInterval ?? 1000);
    this.timer.unref();
  }

  override log(info: { record?: LogRecord }, next: () => void): void {
    if (info.record) {
      if (this.stopped) {
        this.dropped++;
      } else if (this.queue.length + this.inFlight >= this.maxQueue) {
        this.drop(1, `it is not keeping up (${this.maxQueue} records queued)`);
      } else {
        const doc = toJsonRecord(info.record, this.opts.node);
        doc['@timestamp'] = info.record.timestamp;
        this.queue.push(safeStringify(doc));
        if (this.queue.length >= this.batchSize) this.tick();
      }
    }
    next();
  }

  /**
   * Sends what is queued now, batch after batch. Resolves when the queue is empty or a batch did not
   * get through (it stays queued and is retried after a back-off).
   */
  flush(): Promise<void> {
    this.sending ??= this.drain()
      // A bug here must cost log records, never the process (an unhandled rejection).
      .catch((err: unknown) => this.trouble(`shipping to Elasticsearch at ${this.where} failed: ${this.redact(describe(err))}`))
      .finally(() => {
        this.sending = undefined;
      });
    return this.sending;
  }

  /**
   * At exit: sends everything queued, retrying for at most flushTimeout so a dead Elasticsearch
   * never holds shutdown; what is left then is counted as dropped. The transport is finished after.
   */
  async flushAll(): Promise<void> {
    if (this.stopped) return;
    clearInterval(this.timer);
    const deadline = Date.now() + this.flushTimeout;
    const giveUp = setTimeout(() => this.abort.abort(), this.flushTimeout);
    try {
      while (this.queue.length > 0 && !this.abort.signal.aborted) {
        await this.flush();
        clearTimeout(this.retryTimer);
        const wait = Math.min(this.nextDelay, deadline - Date.now());
        if (this.queue.length > 0 && wait > 0) await sleep(wait, undefined, { signal: this.abort.signal }).catch(noop);
      }
    } finally {
      clearTimeout(giveUp);
      this.stop();
    }
  }

  /** Stops at once (winston calls it when the logger ends); what is still queued is counted dropped. */
  override close(): void {
    this.stop();
  }

  private stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.retryTimer);
    this.abort.abort();
    const left = this.queue.splice(0).length;
    if (left > 0) this.drop(left, 'they were still queued at shutdown');
    this.client.close().catch(noop);
  }

  /** The timer and a full batch start a flush, unless a back-off is running. */
  private tick(): void {
    if (this.retryTimer === undefined && !this.stopped) void this.flush();
  }

  private async drain(): Promise<void> {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    while (this.queue.length > 0 && !this.stopped && !this.abort.signal.aborted) {
      const batch = this.queue.splice(0, this.batchSize);
      this.inFlight = batch.length;
      const again = await this.send(batch);
      this.inFlight = 0;
      if (this.stopped) {
        if (again.length > 0) this.drop(again.length, 'they were still queued at shutdown');
        return;
      }
      if (again.length > 0) {
        this.queue.unshift(...again);
        this.backOff();
        return;
      }
    }
  }

  private backOff(): void {
    const delay = this.nextDelay;
    this.nextDelay = Math.min(delay * 2, this.maxRetryDelay);
    this.retryTimer = setTimeout(() => void this.flush(), delay);
    this.retryTimer.unref();
  }

  /** One bulk request; returns the records to send again later. Never throws. */
  private async send(batch: string[]): Promise<string[]> {
    const operations: string[] = [];
    for (const doc of batch) operations.push(this.action, doc);
    let answer: BulkAnswer;
    try {
      answer = await this.client.bulk({ operations }, { signal: this.abort.signal, requestTimeout: this.timeout });
    } catch (err) {
      if (!retryable(err)) {
        this.drop(batch.length, `it refused a batch (${this.redact(describe(err))})`);
        return [];
      }
      this.down = true;
      this.trouble(`Elasticsearch at ${this.where} did not take log records (${this.redact(describe(err))}); ` +
        `they stay queued, at most ${this.maxQueue}, and are retried; reported once until it is back`);
      return batch;
    }
    const again: string[] = [];
    const refused: string[] = [];
    if (answer?.errors && Array.isArray(answer.items)) {
      answer.items.forEach((item, i) => {
        const result = Object.values(item ?? {})[0];
        if (result?.error === undefined || i >= batch.length) return;
        if (retryableStatus(result.status)) again.push(batch[i]);
        else refused.push(result.error.type ?? `status ${result.status}`);
      });
    }
    this.sent += batch.length - again.length - refused.length;
    if (refused.length > 0) this.drop(refused.length, `it refused ${refused.length} records (${this.redact(refused[0])})`);
    if (again.length > 0) {
      this.down = true;
      this.trouble(`Elasticsearch at ${this.where} is overloaded (items answered 429 or 5xx); those records are retried; reported once until it is back`);
      return again;
    }
    this.nextDelay = this.retryDelay;
    if (this.down) {
      this.down = false;
      if (this.warned) this.warn(`log: Elasticsearch at ${this.where} takes log records again; ${this.dropped} dropped so far`);
      this.warned = false;
    }
    return again;
  }

  private drop(n: number, why: string): void {
    this.dropped += n;
    this.trouble(`dropping log records for Elasticsearch at ${this.where}: ${why}; reported once until it is back`);
  }

  private trouble(message: string): void {
    if (this.warned) return;
    this.warned = true;
    this.warn(`log: ${message}`);
  }

  /** Library messages may quote the URL or the request; the password never reaches a log line. */
  private redact(text: string): string {
    for (const secret of this.secrets) text = text.split(secret).join('***');
    return text;
  }
}

type BulkAnswer = Awaited<ReturnType<Client['bulk']>>;
type ElasticsearchModule = typeof import('@elastic/elasticsearch');

let elasticsearchModule: ElasticsearchModule | undefined;

/** Loaded on first use: the client takes about half a second to load, and most nodes ship no logs. */
function elasticsearch(): ElasticsearchModule {
  return (elasticsearchModule ??= require('@elastic/elasticsearch') as ElasticsearchModule);
}

/**
 * Worth sending again: Elasticsearch was not reached, did not answer in time, or pushed back.
 * 429 is its back-pressure (a full write queue) and 5xx a node or shard not ready; any other 4xx
 * would be refused again, so that batch is dropped.
 */
function retryable(err: unknown): boolean {
  const { errors } = elasticsearch();
  if (err instanceof errors.ResponseError) return retryableStatus(err.statusCode);
  return (
    err instanceof errors.ConnectionError ||
    err instanceof errors.TimeoutError ||
    err instanceof errors.NoLivingConnectionsError ||
    err instanceof errors.RequestAbortedError
  );
}

function retryableStatus(status: number | undefined): boolean {
  return status === 429 || (status ?? 0) >= 500;
}

/** `HTTP 503 unavailable_shards_exception`, `ConnectionError: connect ECONNREFUSED …`: one line. */
function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const message = err.message.split('\n')[0];
  if (err instanceof elasticsearch().errors.ResponseError) return `HTTP ${err.statusCode} ${message}`;
  return `${err.name}: ${message}`;
}

/** The URL with its password replaced by `***`, for messages. */
function redactUrl(value: string): string {
  try {
    const url = new URL(value);
    if (url.password !== '') url.password = '***';
    return url.toString().replace(/\/+$/, '');
  } catch {
    return '(an unparseable URL)';
  }
}
