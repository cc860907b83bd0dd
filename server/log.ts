/**
 * Logging on winston: human-readable lines or JSON, to the console, a file and Elasticsearch.
 * Categories (`--debug cluster,db`) turn on debug lines for one part of the server; a disabled
 * debug() is a no-op function, so hot paths pay one call and nothing else.
 */
import path from 'node:path';
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
  /** Records Elasticsearch did not take (it did not answer, or refused them); 0 without it. */
  droppedRecords(): number;
}

export type LoggerConfig = Pick<
  Config,
  'logLevel' | 'logFile' | 'logJson' | 'debug' | 'logElasticsearch' | 'logElasticsearchIndex' | 'clusterHostname'
>;

export interface CreateLoggerOptions {
  /** Where console lines go [process.stdout]. */
  stream?: NodeJS.WritableStream;
  /** Receives the one warning printed when Elasticsearch stops answering [console.warn]. */
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
  /** Base URL of the cluster, e.g. http://elastic:9200. */
  url: string;
  /** Index (or data stream) to write to [xmpp-server]. */
  index?: string;
  /** Cluster hostname written into every record. */
  node: string;
  /** Milliseconds between flushes [1000]. */
  flushInterval?: number;
  /** Records per bulk request; a full batch is sent at once [500]. */
  batchSize?: number;
  /** Records held while Elasticsearch is slow; beyond this new records are dropped [10000]. */
  maxQueue?: number;
  /** Milliseconds to wait for a bulk answer before counting the batch dropped [10000]. */
  timeout?: number;
  /** Receives the single warning about dropping [console.warn]. */
  warn?: (message: string) => void;
}

/**
 * A winston transport that batches JSON records and POSTs them to `${url}/_bulk`. When
 * Elasticsearch does not answer, batches are dropped and counted (logging must never block or
 * grow without bound), and one warning goes to the console.
 */
export class ElasticsearchTransport extends Transport {
  /** Records Elasticsearch did not take. */
  dropped = 0;
  /** Records Elasticsearch accepted. */
  sent = 0;
  private queue: string[] = [];
  private sending: Promise<void> = Promise.resolve();
  private warned = false;
  private readonly timer: NodeJS.Timeout;
  private readonly endpoint: string;
  private readonly action: string;
  private readonly batchSize: number;
  private readonly maxQueue: number;
  private readonly timeout: number;
  private readonly warnOnce: (message: string) => void;

  constructor(private readonly opts: ElasticsearchTransportOptions) {
    super();
    this.endpoint = `${opts.url.replace(/\/+$/, '')}/_bulk`;
    // `create` works for plain indices and data streams alike.
    this.action = JSON.stringify({ create: { _index: opts.index ?? 'xmpp-server' } });
    this.batchSize = opts.batchSize ?? 500;
    this.maxQueue = opts.maxQueue ?? 10000;
    this.timeout = opts.timeout ?? 10000;
    this.warnOnce = opts.warn ?? ((m) => console.warn(m));
    this.timer = setInterval(() => void this.flush(), opts.flushInterval ?? 1000);
    this.timer.unref();
  }

  override log(info: { record?: LogRecord }, next: () => void): void {
    if (info.record) {
      if (this.queue.length >= this.maxQueue) {
        this.drop(1, 'it is not keeping up');
      } else {
        const doc = toJsonRecord(info.record, this.opts.node);
        doc['@timestamp'] = info.record.timestamp;
        this.queue.push(safeStringify(doc));
        if (this.queue.length >= this.batchSize) void this.flush();
      }
    }
    next();
  }

  /** Sends what is queued, one bulk request at a time; resolves when the queue is empty. */
  flush(): Promise<void> {
    this.sending = this.sending.then(async () => {
      while (this.queue.length > 0) await this.sendBatch(this.queue.splice(0, this.batchSize));
    });
    return this.sending;
  }

  /** Stops the timer and sends everything still queued. */
  async flushAll(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  override close(): void {
    clearInterval(this.timer);
  }

  private async sendBatch(docs: string[]): Promise<void> {
    let body = '';
    for (const doc of docs) body += `${this.action}\n${doc}\n`;
    try {
      const res = await fetch(this.endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/x-ndjson' },
        body,
        signal: AbortSignal.timeout(this.timeout),
      });
      const text = await res.text();
      if (!res.ok) return this.drop(docs.length, `it answered HTTP ${res.status}`);
      const refused = countRefused(text);
      if (refused > 0) this.drop(refused, 'it refused some records');
      this.sent += docs.length - refused;
    } catch (err) {
      this.drop(docs.length, `it did not answer (${(err as Error).message})`);
    }
  }

  private drop(n: number, why: string): void {
    this.dropped += n;
    if (this.warned) return;
    this.warned = true;
    this.warnOnce(`log: dropping log records for Elasticsearch at ${this.opts.url}: ${why}; this is reported once`);
  }
}

/** Items of a bulk response that failed (`errors: true` and an item with `error`). */
function countRefused(text: string): number {
  try {
    const answer = JSON.parse(text) as { errors?: boolean; items?: Record<string, { error?: unknown }>[] };
    if (!answer.errors || !Array.isArray(answer.items)) return 0;
    return answer.items.filter((item) => Object.values(item).some((r) => r?.error !== undefined)).length;
  } catch {
    return 0;
  }
}
