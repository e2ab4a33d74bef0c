/**
 * The pipeline suite again, every bot keeping its state in PostgreSQL (a real server started for this process):
 * the same behaviours on both backends.
 */
process.env.IMS_TEST_STATE = 'postgres';
await import('./pipeline.test.ts');
