/** The interactive suite again, every bot keeping its state in PostgreSQL (a real server started for this process). */
process.env.IMS_TEST_STATE = 'postgres';
await import('./interactive.test.ts');
