import { startPostgres } from '../helpers/postgres.js';
const pg = (await startPostgres({ name: 'dbg' }))!;
console.log(pg.url);
process.on('SIGTERM', () => { void pg.destroy().then(() => process.exit(0)); });
setInterval(() => {}, 1 << 30);
