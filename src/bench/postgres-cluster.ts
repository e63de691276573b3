// A throwaway PostgreSQL server (initdb in a temp dir, 127.0.0.1, a free port, no fsync), for the
// benchmark and the tests (test/helpers/postgres.ts wraps it for tap). Never for production: it
// trades durability for a quick start. As root it runs the server as the Debian `postgres` user,
// since PostgreSQL refuses to run as root.
import { execFile, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { generate } from 'selfsigned';

/** A throwaway PostgreSQL server for one test file or one benchmark run (see startPostgres). */
export interface PgCluster {
  /** postgres://hellwall:<password>@127.0.0.1:<port>/<db> of a fresh empty database made for the caller. */
  readonly url: string;
  readonly port: number;
  /** The superuser-free role's password (for "wrong password" tests build a URL with another). */
  readonly password: string;
  /** Another fresh empty database on the same cluster; answers its URL. */
  createDatabase(name?: string): Promise<string>;
  /** Stops the server (fast mode) without deleting data: for outage tests. */
  stopServer(): Promise<void>;
  /** Starts it again on the same port. */
  startServer(): Promise<void>;
  /** Stops the server and deletes the cluster directory. Idempotent. */
  destroy(): Promise<void>;
  /**
   * With `tls`: the server's self-signed certificate (for 127.0.0.1 and localhost), which is its
   * own CA: `?sslmode=verify-full&sslrootcert=<caFile>`. Plain connections are accepted too.
   */
  readonly caFile?: string;
}

export interface PgOptions {
  /** Prefix of the databases' names. */
  readonly name?: string;
  /** Serve TLS too, with a throwaway certificate (see PgCluster.caFile). */
  readonly tls?: boolean;
}

/** The role the store connects as: owns its databases, and nothing more. */
export const PG_ROLE = 'hellwall';
// The bootstrap superuser, reachable only through the unix socket inside the cluster's private
// temp directory (trust there; host connections need the role's password, scram-sha-256).
const SUPERUSER = 'postgres';
const START_TIMEOUT_S = 30;

/** The bin directory of the highest PostgreSQL version installed the Debian way, or undefined. */
export function findPostgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => /^\d+(\.\d+)?$/.test(v) && existsSync(path.join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : path.join(root, versions[0], 'bin');
}

/** A port free on 127.0.0.1 now (it may be taken before the server binds it: callers retry). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** PostgreSQL refuses to run as root: as root, its programs run as the Debian `postgres` user. */
interface Runner {
  readonly asRoot: boolean;
  run(bin: string, args: string[]): Promise<void>;
  /** For the exit hook, where nothing asynchronous runs any more. */
  runSync(bin: string, args: string[]): void;
  /** The command line, quoted for sh. */
  shell(bin: string, args: string[]): string;
}

function runner(binDir: string): Runner {
  const asRoot = process.getuid?.() === 0;
  const command = (bin: string, args: string[]): [string, string[]] =>
    asRoot ? ['runuser', ['-u', SUPERUSER, '--', path.join(binDir, bin), ...args]] : [path.join(binDir, bin), args];
  return {
    asRoot,
    run: (bin, args) =>
      new Promise((resolve, reject) => {
        const [file, argv] = command(bin, args);
        // stdio is not inherited by the postmaster: pg_ctl -l sends its output to the log file.
        execFile(file, argv, { timeout: (START_TIMEOUT_S + 10) * 1000 }, (err, stdout, stderr) => {
          if (err) reject(new Error(`${bin} ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`));
          else resolve();
        });
      }),
    runSync: (bin, args) => {
      const [file, argv] = command(bin, args);
      spawnSync(file, argv, { stdio: 'ignore', timeout: 10_000 });
    },
    shell: (bin, args) => command(bin, args).flat().map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' '),
  };
}

/**
 * A new cluster in a temp dir on 127.0.0.1 and a free port, run as an unprivileged user; or
 * undefined when no PostgreSQL binaries are found.
 */
export async function startPostgres(opts: PgOptions = {}): Promise<PgCluster | undefined> {
  const binDir = findPostgresBinDir();
  if (!binDir) return undefined;
  const r = runner(binDir);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-pg-'));
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'server.log');
  const owner = r.asRoot
    ? {
        uid: Number(spawnSync('id', ['-u', SUPERUSER], { encoding: 'utf8' }).stdout.trim()),
        gid: Number(spawnSync('id', ['-g', SUPERUSER], { encoding: 'utf8' }).stdout.trim()),
      }
    : undefined;
  if (owner) chownSync(dir, owner.uid, owner.gid);
  // The server reads its key only if the server's user owns it, mode 0600.
  const certFile = path.join(dir, 'server.crt');
  const keyFile = path.join(dir, 'server.key');
  if (opts.tls) {
    const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
      keyType: 'ec',
      algorithm: 'sha256',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }, { type: 2, value: 'localhost' }] }],
    });
    writeFileSync(certFile, pems.cert, { mode: 0o644 });
    writeFileSync(keyFile, pems.private, { mode: 0o600 });
    if (owner) for (const f of [certFile, keyFile]) chownSync(f, owner.uid, owner.gid);
  }
  const password = randomBytes(18).toString('hex');
  let port = 0;
  let running = false;

  // Crash safety is not the point of a throwaway cluster: no fsync, small buffers, quick start.
  const startArgs = (): string[] => [
    'start', '-D', dataDir, '-l', logFile, '-w', '-t', String(START_TIMEOUT_S), '-o',
    [
      `-p ${port}`,
      '-c listen_addresses=127.0.0.1',
      `-c unix_socket_directories=${dir}`,
      '-c fsync=off',
      '-c synchronous_commit=off',
      '-c full_page_writes=off',
      '-c shared_buffers=16MB',
      '-c max_connections=100',
      '-c max_wal_size=256MB',
      ...(opts.tls ? ['-c ssl=on', `-c ssl_cert_file=${certFile}`, `-c ssl_key_file=${keyFile}`] : []),
    ].join(' '),
  ];
  const stopSync = (): void => {
    if (running) r.runSync('pg_ctl', ['stop', '-D', dataDir, '-m', 'immediate', '-w']);
    rmSync(dir, { recursive: true, force: true });
    stopWatchdog();
  };
  // Best effort when the test process ends without destroy (a failed assertion, an uncaught error).
  const onExit = (): void => stopSync();
  process.once('exit', onExit);
  // And when it is killed (tap's timeout, SIGKILL), where no exit hook runs: a watchdog outside it
  // stops the server and deletes the directory once this process is gone.
  const stopCommand = r.shell('pg_ctl', ['stop', '-D', dataDir, '-m', 'immediate', '-w']);
  const watchdog = spawn(
    'sh',
    ['-c', `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; if [ -d '${dataDir}' ]; then ${stopCommand}; fi; rm -rf '${dir}'`],
    { detached: true, stdio: 'ignore' },
  );
  watchdog.unref();
  const stopWatchdog = (): void => void watchdog.kill();

  const superuser = async <T>(database: string, fn: (c: pg.Client) => Promise<T>): Promise<T> => {
    const c = new pg.Client({ host: dir, port, user: SUPERUSER, database });
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  };

  let made = 0;
  const createDatabase = async (name?: string): Promise<string> => {
    const db = name ?? `${opts.name ?? 'hw'}_${++made}_${randomBytes(3).toString('hex')}`;
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(db)) throw new Error(`not a plain database name: ${db}`);
    await superuser('postgres', (c) => c.query(`CREATE DATABASE ${db} OWNER ${PG_ROLE}`));
    return `postgres://${PG_ROLE}:${password}@127.0.0.1:${port}/${db}`;
  };

  try {
    await r.run('initdb', [
      '-D', dataDir, '-U', SUPERUSER, '--auth-local=trust', '--auth-host=scram-sha-256',
      '--no-sync', '--no-instructions', '-E', 'UTF8', '--locale=C',
    ]);
    // The port is free when asked but another file's server may take it first: try a few.
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      try {
        await r.run('pg_ctl', startArgs());
        break;
      } catch (err) {
        const log = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
        if (attempt >= 5 || !/could not (bind|create listen)|in use/i.test(log)) throw new Error(`${(err as Error).message}\n${log}`);
      }
    }
    running = true;
    await superuser('postgres', (c) =>
      c.query(`CREATE ROLE ${PG_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '${password}'`),
    );
  } catch (err) {
    stopSync();
    process.removeListener('exit', onExit);
    stopWatchdog();
    throw err;
  }

  const url = await createDatabase();
  let destroyed: Promise<void> | undefined;
  return {
    url,
    port,
    password,
    ...(opts.tls && { caFile: certFile }),
    createDatabase,
    async stopServer() {
      if (!running) return;
      await r.run('pg_ctl', ['stop', '-D', dataDir, '-m', 'fast', '-w']);
      running = false;
    },
    async startServer() {
      if (running) return;
      await r.run('pg_ctl', startArgs());
      running = true;
    },
    destroy() {
      destroyed ??= (async () => {
        process.removeListener('exit', onExit);
        stopWatchdog();
        if (running) {
          await r.run('pg_ctl', ['stop', '-D', dataDir, '-m', 'immediate', '-w']).catch(() => undefined);
          running = false;
        }
        rmSync(dir, { recursive: true, force: true });
      })();
      return destroyed;
    },
  };
}

