/** What storage logs through: start-up and migration progress at info, details at debug. */
export interface StorageLogger {
  debug(msg: string): void;
  info(msg: string): void;
}

export const silentLogger: StorageLogger = { debug() {}, info() {} };
