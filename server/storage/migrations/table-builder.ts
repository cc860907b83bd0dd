import type { Knex } from 'knex';
import { EXACT_COLLATIONS_QUERY, pickExactCollation } from '../mysql-collation';

/**
 * createTable for every migration: on MySQL every table is InnoDB, utf8mb4 (emoji), with an
 * exact collation for JIDs (see mysql-collation.ts).
 */
export async function tableCreator(knex: Knex): Promise<(name: string, build: (t: Knex.CreateTableBuilder) => void) => Knex.SchemaBuilder> {
  const mysql = knex.client.dialect === 'mysql';
  let collation = '';
  if (mysql) {
    const [result] = await knex.raw(EXACT_COLLATIONS_QUERY);
    collation = pickExactCollation((result as { name: string }[]).map((r) => r.name));
  }
  return (name, build) =>
    knex.schema.createTable(name, (t) => {
      if (mysql) {
        t.engine('InnoDB');
        t.charset('utf8mb4');
        t.collate(collation);
      }
      build(t);
    });
}
